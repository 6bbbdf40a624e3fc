package server

import (
	_ "embed"
	"net/http"

	"sigs.k8s.io/yaml"
)

// openapiYAML is the API's OpenAPI 3.1 description.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPIJSON returns the API description as JSON.
func OpenAPIJSON() ([]byte, error) { return yaml.YAMLToJSON(openapiYAML) }

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) {
	b, err := OpenAPIJSON()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
