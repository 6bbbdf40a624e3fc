package push

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"sigs.k8s.io/yaml"

	"github.com/bale-build/bale/atomicfile"
	"github.com/bale-build/bale/inspect"
)

// ValuesAirgap returns a Helm values file that points every image
// reference in a chart's default values at the mirror, or nil when the
// chart references none that can be rewritten. It sets only the keys it
// rewrites, so it is passed with `-f` on top of the chart's own values:
//
//   - KEY.image: "REF" (a string) becomes "REGISTRY/PREFIX/REPO:TAG"
//     (the digest kept if the reference has one);
//   - KEY.repository (with KEY.registry present) becomes "PREFIX/REPO" and
//     KEY.registry becomes "REGISTRY";
//   - KEY.repository (without KEY.registry) becomes
//     "REGISTRY/PREFIX/REPO"; KEY.tag and KEY.digest are left alone.
//
// REPO is the reference's repository path without its registry ("nginx" is
// "library/nginx"), which is where `bale push` puts an image tagged with
// that reference. References inside lists are not rewritten: an override
// would have to replace the whole list.
func ValuesAirgap(ch inspect.Chart, reg name.Registry, prefix string) ([]byte, error) {
	root := map[string]any{}
	n := 0
	for _, im := range ch.Images {
		if im.InList {
			continue
		}
		ref, err := name.ParseReference(im.Ref, name.WeakValidation)
		if err != nil {
			return nil, fmt.Errorf("chart %s: values %s: reference %q: %w", ch.Name, im.Key, im.Ref, err)
		}
		repo := strings.TrimPrefix(prefix+"/"+ref.Context().RepositoryStr(), "/")
		keys := strings.Split(im.Key, ".")
		switch im.Form {
		case "string":
			v := reg.RegistryStr() + "/" + repo
			if d, ok := ref.(name.Digest); ok {
				v += "@" + d.DigestStr()
			} else {
				v += ":" + ref.Identifier()
			}
			setKey(root, keys, v)
		case "map":
			if im.HasRegistry {
				setKey(root, append(keys, "registry"), reg.RegistryStr())
				setKey(root, append(keys, "repository"), repo)
			} else {
				setKey(root, append(keys, "repository"), reg.RegistryStr()+"/"+repo)
			}
		}
		n++
	}
	if n == 0 {
		return nil, nil
	}
	out, err := yaml.Marshal(root)
	if err != nil {
		return nil, err
	}
	head := fmt.Sprintf("# Written by bale push for chart %s %s: image references pointed at %s.\n", ch.Name, ch.Version, strings.TrimSuffix(reg.RegistryStr()+"/"+prefix, "/"))
	return append([]byte(head), out...), nil
}

// setKey sets root[k0][k1]...= v, creating maps on the way.
func setKey(root map[string]any, keys []string, v any) {
	m := root
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[keys[len(keys)-1]] = v
}

// WriteValuesAirgap writes NAME-VERSION.values-airgap.yaml into dir for
// every chart with image references to rewrite, each file whole or not at
// all, and returns the paths written.
func WriteValuesAirgap(dir string, charts []inspect.Chart, reg name.Registry, prefix string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("values-airgap: %w", err)
	}
	files := []string{}
	for _, ch := range charts {
		b, err := ValuesAirgap(ch, reg, prefix)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		p := filepath.Join(dir, ch.Name+"-"+ch.Version+".values-airgap.yaml")
		if err := atomicfile.WriteFile(p, b); err != nil {
			return nil, err
		}
		files = append(files, p)
	}
	return files, nil
}
