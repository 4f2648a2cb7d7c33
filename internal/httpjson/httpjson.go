// Package httpjson writes the JSON answers of tollgate's modules (authjwt,
// jwt_refresh, payproxy): the body with Content-Type: application/json
// and Cache-Control: no-store, and errors as DESIGN.md's
// {"error": code, "error_description": description}.
package httpjson

import (
	"encoding/json"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// A Form is how one kind of endpoint writes its answers. The two forms
// differ as the modules always have, so that no client sees a byte change.
type Form struct {
	pragma  bool // Pragma: no-cache as well
	newline bool // the body ends with a newline (json.Encoder's form)
}

var (
	// API is the form of payproxy's and authjwt's answers.
	API = Form{newline: true}
	// Token is the form of jwt_refresh's answers: OAuth 2.0 token answers
	// carry Pragma: no-cache beside Cache-Control (RFC 6749 section 5.1).
	Token = Form{pragma: true}
)

// Write answers v as JSON with status, and returns nil: the answer is
// complete. A value that does not marshal writes nothing and is returned
// as a 500 for Caddy to answer.
func (f Form) Write(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	if f.newline {
		body = append(body, '\n')
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	if f.pragma {
		hdr.Set("Pragma", "no-cache")
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// Error answers the error body with status, and returns nil.
func (f Form) Error(w http.ResponseWriter, status int, code, description string) error {
	return f.Write(w, status, map[string]string{"error": code, "error_description": description})
}
