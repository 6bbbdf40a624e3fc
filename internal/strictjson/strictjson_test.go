package strictjson

import (
	"strings"
	"testing"
)

func TestUnmarshal(t *testing.T) {
	type doc struct {
		A int `json:"a"`
	}
	tests := []struct {
		name, in string
		max      int
		want     string // "" means success
	}{
		{"ok", `{"a":1}`, 100, ""},
		{"ok with trailing space", "{\"a\":1}\n\t ", 100, ""},
		{"too long", `{"a":1}`, 6, "7 bytes, more than the 6 allowed"},
		{"unknown field", `{"a":1,"b":2}`, 100, `unknown field "b"`},
		{"second value", `{"a":1}{"a":2}`, 100, "data after the JSON value"},
		{"trailing garbage", `{"a":1} x`, 100, "data after the JSON value"},
		{"not JSON", `{"a":`, 100, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := Unmarshal([]byte(tt.in), tt.max, &d)
			if tt.want == "" {
				if err != nil || d.A != 1 {
					t.Fatalf("got %+v, %v", d, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
