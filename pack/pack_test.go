package pack

import (
	"strings"
	"testing"
)

func dg(c string) string { return "sha256:" + strings.Repeat(c, 64) }

func TestIndexRoundTrip(t *testing.T) {
	ix := &Index{
		FormatVersion: FormatVersion, Kind: Kind, Name: "p", PlanID: dg("a"), SpecDigest: dg("b"),
		SourceDateEpoch: "2025-01-01T00:00:00Z",
		Entries:         []Entry{{Path: "charts/a.tgz", Size: 1, SHA256: strings.Repeat("c", 64)}},
		Images:          []Image{{Name: "img", Digest: dg("d"), LayoutDigest: dg("d")}},
	}
	b, err := MarshalIndex(ix)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "formatVersion": 1,
  "kind": "bootstrap-pack",
  "name": "p",
  "planId": "` + dg("a") + `",
  "specDigest": "` + dg("b") + `",
  "sourceDateEpoch": "2025-01-01T00:00:00Z",
  "entries": [
    {
      "path": "charts/a.tgz",
      "size": 1,
      "sha256": "` + strings.Repeat("c", 64) + `"
    }
  ],
  "images": [
    {
      "name": "img",
      "digest": "` + dg("d") + `",
      "layoutDigest": "` + dg("d") + `",
      "tags": [],
      "platforms": []
    }
  ],
  "charts": [],
  "bundles": []
}
`
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
	back, err := ParseIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if b2, _ := MarshalIndex(back); string(b2) != string(b) {
		t.Error("round trip changed the bytes")
	}
	if len(RootHash(b)) != 64 {
		t.Error("root hash is not 64 hex digits")
	}
}

func TestParseIndexRejects(t *testing.T) {
	base := `{"formatVersion":1,"kind":"bootstrap-pack","name":"p","planId":"` + dg("a") + `","specDigest":"` + dg("b") + `","sourceDateEpoch":"x","entries":%s,"images":[],"bundles":[]}`
	for name, entries := range map[string]string{
		"unsorted":  `[{"path":"b","size":1,"sha256":"` + strings.Repeat("c", 64) + `"},{"path":"a","size":1,"sha256":"` + strings.Repeat("c", 64) + `"}]`,
		"escaping":  `[{"path":"../a","size":1,"sha256":"` + strings.Repeat("c", 64) + `"}]`,
		"bad sha":   `[{"path":"a","size":1,"sha256":"xyz"}]`,
		"itself":    `[{"path":"pack-index.json","size":1,"sha256":"` + strings.Repeat("c", 64) + `"}]`,
		"unknown":   `[{"path":"a","size":1,"sha256":"` + strings.Repeat("c", 64) + `","mode":1}]`,
		"negative":  `[{"path":"a","size":-1,"sha256":"` + strings.Repeat("c", 64) + `"}]`,
		"duplicate": `[{"path":"a","size":1,"sha256":"` + strings.Repeat("c", 64) + `"},{"path":"a","size":1,"sha256":"` + strings.Repeat("c", 64) + `"}]`,
	} {
		if _, err := ParseIndex([]byte(strings.Replace(base, "%s", entries, 1))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseIndex([]byte(strings.Replace(base, "%s", "[]", 1) + "{}")); err == nil {
		t.Error("trailing data accepted")
	}
}

// TestChartsSection: a chart and its values file must be entries of the
// pack with the sha256 the section gives, at the paths the rules say.
func TestChartsSection(t *testing.T) {
	c64, d64 := strings.Repeat("c", 64), strings.Repeat("d", 64)
	good := func() *Index {
		return &Index{
			FormatVersion: FormatVersion, Kind: Kind, Name: "p", PlanID: dg("a"), SpecDigest: dg("b"),
			Entries: []Entry{
				{Path: "charts/web-1.0.0.tgz", Size: 1, SHA256: c64},
				{Path: "charts/web-1.0.0.values-airgap.yaml", Size: 2, SHA256: d64},
			},
			Charts: []Chart{{
				Name: "web", Version: "1.0.0", Path: "charts/web-1.0.0.tgz", SHA256: c64, UpstreamDigest: dg("e"),
				Source: ChartSource{Type: "repository", URL: "https://charts.example/"},
				Values: &Entry{Path: "charts/web-1.0.0.values-airgap.yaml", Size: 2, SHA256: d64},
			}},
		}
	}
	b, err := MarshalIndex(good())
	if err != nil {
		t.Fatal(err)
	}
	if back, err := ParseIndex(b); err != nil || back.Charts[0].Values.SHA256 != d64 {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	for name, edit := range map[string]func(*Index){
		"not an entry":        func(ix *Index) { ix.Entries = ix.Entries[1:] },
		"other sha256":        func(ix *Index) { ix.Charts[0].SHA256 = d64 },
		"other path":          func(ix *Index) { ix.Charts[0].Path = "charts/other.tgz" },
		"version off":         func(ix *Index) { ix.Charts[0].Version = "2.0.0" },
		"bad upstream":        func(ix *Index) { ix.Charts[0].UpstreamDigest = "sha256:x" },
		"no source":           func(ix *Index) { ix.Charts[0].Source = ChartSource{} },
		"values not an entry": func(ix *Index) { ix.Entries = ix.Entries[:1] },
		"values other sha":    func(ix *Index) { ix.Charts[0].Values.SHA256 = c64 },
		"values other path":   func(ix *Index) { ix.Charts[0].Values.Path = "charts/web-1.0.0.tgz" },
		"unsorted": func(ix *Index) {
			c := ix.Charts[0]
			c.Name, c.Values = "a", nil
			ix.Charts = append(ix.Charts, c)
		},
	} {
		ix := good()
		edit(ix)
		if _, err := MarshalIndex(ix); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPaths(t *testing.T) {
	if BlobPath("sha256:../../x") != "" || BlobPath(dg("A")) != "" {
		t.Error("BlobPath accepted a bad digest")
	}
	if got, want := BlobPath(dg("1")), "images/blobs/sha256/"+strings.Repeat("1", 64); got != want {
		t.Errorf("BlobPath = %q, want %q", got, want)
	}
}
