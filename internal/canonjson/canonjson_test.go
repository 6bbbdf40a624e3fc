package canonjson

import (
	"bytes"
	"testing"
)

func TestForms(t *testing.T) {
	t.Parallel()
	v := struct {
		B string            `json:"b"`
		A map[string]int    `json:"a"`
		C []string          `json:"c,omitempty"`
		D map[string]string `json:"d"`
	}{B: "<x&y>", A: map[string]int{"z": 1, "m": 2}, D: map[string]string{}}
	for _, tc := range []struct {
		name string
		f    func(any) ([]byte, error)
		want string
	}{
		{"Marshal", Marshal, "{\n  \"b\": \"<x&y>\",\n  \"a\": {\n    \"m\": 2,\n    \"z\": 1\n  },\n  \"d\": {}\n}\n"},
		{"Compact", Compact, "{\"b\":\"<x&y>\",\"a\":{\"m\":2,\"z\":1},\"d\":{}}\n"},
	} {
		got, err := tc.f(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("%s = %q, want %q", tc.name, got, tc.want)
		}
		var b bytes.Buffer
		if err := NewEncoder(&b, tc.name == "Marshal").Encode(v); err != nil || b.String() != tc.want {
			t.Errorf("NewEncoder(%s) = %q, %v", tc.name, b.String(), err)
		}
	}
	if _, err := Marshal(func() {}); err == nil {
		t.Error("Marshal of a func: no error")
	}
}
