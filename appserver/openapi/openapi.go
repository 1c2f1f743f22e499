// Package openapi holds the OpenAPI 3.1 document of the app server's API, openapi.yaml
// beside this file, written by hand, and serves it as JSON:
//
//	GET /v1/openapi.json   the document                       public, 5 min
//
// The document lists every route the app server registers, with its parameters, bodies,
// responses and the headers of the edge contract; a test of the app server fails when a
// registered route is missing from it, or when it lists a route that is not registered.
package openapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"go.yaml.in/yaml/v3"

	"github.com/muejam/edge/appserver/api"
)

// source is openapi.yaml, the document as written.
//
//go:embed openapi.yaml
var source []byte

// document is source as JSON, converted once at startup. A source that does not convert
// fails every test of the package: reaching the panic takes a build whose tests failed.
var document = func() []byte {
	b, err := toJSON(source)
	if err != nil {
		panic("openapi: openapi.yaml: " + err.Error())
	}
	return b
}()

// Handler serves the document as JSON.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.Public(w, api.Document)
		api.WriteJSON(w, r, http.StatusOK, document)
	})
}

// toJSON converts a YAML document to JSON, keeping the order of mapping keys (so the JSON
// reads like the YAML). Keys are written as strings whatever their YAML type ('200' and 200
// are both "200"), as JSON and OpenAPI want.
func toJSON(src []byte) ([]byte, error) {
	dec := yaml.NewDecoder(bytes.NewReader(src))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		return nil, err
	}
	switch err := dec.Decode(new(yaml.Node)); {
	case err == nil:
		return nil, errors.New("more than one YAML document")
	case err != io.EOF:
		return nil, err
	}
	var buf bytes.Buffer
	if err := writeJSON(&buf, &root); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeJSON writes the YAML node n to buf as JSON.
func writeJSON(buf *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		buf.WriteByte('{')
		for i := 0; i < len(n.Content); i += 2 {
			if i > 0 {
				buf.WriteByte(',')
			}
			key, err := json.Marshal(n.Content[i].Value)
			if err != nil {
				return err
			}
			buf.Write(key)
			buf.WriteByte(':')
			if err := writeJSON(buf, n.Content[i+1]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case yaml.DocumentNode:
		return writeJSON(buf, n.Content[0])
	case yaml.SequenceNode:
		buf.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeJSON(buf, c); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case yaml.AliasNode:
		return writeJSON(buf, n.Alias)
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return err
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		buf.Write(b)
	default:
		return fmt.Errorf("line %d: unexpected YAML node kind %v", n.Line, n.Kind)
	}
	return nil
}
