package inspect

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"helm.sh/helm/v3/pkg/chart"
	"sigs.k8s.io/yaml"
)

// ValuesImage is an image reference found in a chart's default values.
//
// Two forms are recognised, at any depth of values.yaml:
//
//   - a key named "image" whose value is a string: the whole reference
//     (Form "string");
//   - a map holding a string "repository", and optionally "registry",
//     "tag" and "digest" (Form "map"), as `helm create` and most charts
//     write image settings. An empty tag stands for the chart's appVersion,
//     as `helm create`'s templates use it.
type ValuesImage struct {
	// Key is the dotted path of the value in values.yaml ("image",
	// "sidecar.image", "jobs[0].image").
	Key string `json:"key"`
	// Ref is the reference the values name, "registry/repository:tag" or
	// with "@digest".
	Ref string `json:"ref"`
	// Form is "string" or "map".
	Form string `json:"form"`
	// Registry, Repository, Tag and Digest are the map form's fields as
	// written; HasRegistry tells an absent registry key from an empty one.
	Registry    string `json:"registry,omitempty"`
	HasRegistry bool   `json:"hasRegistry,omitempty"`
	Repository  string `json:"repository,omitempty"`
	Tag         string `json:"tag,omitempty"`
	Digest      string `json:"digest,omitempty"`
	// InList is true when the value sits inside a list, where a values
	// override would have to replace the whole list.
	InList bool `json:"inList,omitempty"`
}

// Bounds on the values walk: a hostile values.yaml cannot make it recurse
// or report without limit.
const (
	maxValuesDepth  = 64
	maxValuesImages = 1000
)

// ValuesImages returns the image references in a chart's values.yaml, in
// key order. appVersion stands in for an empty tag of the map form.
func ValuesImages(values []byte, appVersion string) ([]ValuesImage, error) {
	var root any
	if err := yaml.Unmarshal(values, &root); err != nil {
		return nil, fmt.Errorf("parse values.yaml: %w", err)
	}
	w := &valuesWalker{appVersion: appVersion, out: []ValuesImage{}}
	if err := w.walk(root, "", false, 0); err != nil {
		return nil, err
	}
	return w.out, nil
}

type valuesWalker struct {
	appVersion string
	out        []ValuesImage
}

func (w *valuesWalker) walk(v any, key string, inList bool, depth int) error {
	if depth > maxValuesDepth {
		return fmt.Errorf("values.yaml: nested deeper than %d at %s", maxValuesDepth, key)
	}
	switch v := v.(type) {
	case map[string]any:
		if img, ok := w.mapImage(v, key, inList); ok {
			return w.add(img)
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			child := joinKey(key, k)
			if s, ok := v[k].(string); ok && k == "image" && s != "" {
				if err := w.add(ValuesImage{Key: child, Ref: s, Form: "string", InList: inList}); err != nil {
					return err
				}
				continue
			}
			if err := w.walk(v[k], child, inList, depth+1); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := w.walk(e, key+"["+strconv.Itoa(i)+"]", true, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *valuesWalker) add(img ValuesImage) error {
	if len(w.out) >= maxValuesImages {
		return fmt.Errorf("values.yaml: more than %d image references", maxValuesImages)
	}
	w.out = append(w.out, img)
	return nil
}

// mapImage recognises the map form.
func (w *valuesWalker) mapImage(m map[string]any, key string, inList bool) (ValuesImage, bool) {
	repo, ok := m["repository"].(string)
	if !ok || repo == "" {
		return ValuesImage{}, false
	}
	img := ValuesImage{Key: key, Form: "map", Repository: repo, InList: inList}
	str := func(k string) (string, bool) {
		switch v := m[k].(type) {
		case string:
			return v, true
		case float64:
			// An unquoted tag such as 1.25 is a number to YAML.
			return strconv.FormatFloat(v, 'f', -1, 64), true
		}
		return "", false
	}
	img.Registry, img.HasRegistry = str("registry")
	img.Tag, _ = str("tag")
	img.Digest, _ = str("digest")
	ref := repo
	if img.Registry != "" {
		ref = img.Registry + "/" + repo
	}
	if tag := cmp.Or(img.Tag, w.appVersion); tag != "" {
		ref += ":" + tag
	}
	if img.Digest != "" {
		ref += "@" + img.Digest
	}
	img.Ref = ref
	return img, true
}

func joinKey(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

// Repository returns the repository path a reference names, without its
// registry ("nginx" is "library/nginx", as Docker Hub names it), or an
// error for a reference that does not parse.
func Repository(ref string) (string, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return "", err
	}
	return r.Context().RepositoryStr(), nil
}

// parseChartMeta parses Chart.yaml and returns it with its JSON encoding,
// which is what Helm stores as a chart's OCI config.
func parseChartMeta(data []byte) (*chart.Metadata, []byte, error) {
	var md chart.Metadata
	if err := yaml.Unmarshal(data, &md); err != nil {
		return nil, nil, err
	}
	if md.Name == "" || md.Version == "" {
		return nil, nil, errors.New("no name or version")
	}
	if strings.ContainsAny(md.Name, "/\\") {
		return nil, nil, fmt.Errorf("name %q contains a path separator", md.Name)
	}
	js, err := json.Marshal(&md)
	if err != nil {
		return nil, nil, err
	}
	return &md, js, nil
}
