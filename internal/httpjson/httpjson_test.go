package httpjson

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Each module's writer as it was before this package (main at bc71b68):
// the answers of Write and Error must stay byte for byte what they wrote.

func payproxyBefore(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func authjwtErrorBefore(w http.ResponseWriter, status int, code, desc string) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": desc})
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func refreshBefore(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func errorBody(code, desc string) map[string]string {
	return map[string]string{"error": code, "error_description": desc}
}

// answer is what reached the client.
type answer struct {
	status int
	header http.Header
	body   string
}

func record(write func(http.ResponseWriter)) answer {
	rec := httptest.NewRecorder()
	write(rec)
	return answer{rec.Code, rec.Result().Header, rec.Body.String()}
}

// TestAnswersAreByteForByteWhatEachModuleWroteBefore: status, every
// header and every byte of the body, for error bodies (with characters
// JSON escapes: <, >, &, quotes, non-ASCII) and for the values the modules
// answer (structs, empty objects, maps, lists).
func TestAnswersAreByteForByteWhatEachModuleWroteBefore(t *testing.T) {
	type view struct {
		OrderNo   string `json:"order_no"`
		AmountFen int64  `json:"amount_fen"`
	}
	values := map[string]any{
		"struct":       view{"ORD<1>&\"x\"", 100},
		"empty object": struct{}{},
		"map":          map[string]int{"revoked_sessions": 2},
		"list":         []view{{"A", 1}, {"运费", 2}},
		"nil list":     []string(nil),
	}
	errs := [][2]string{
		{"invalid_request", "body is not valid JSON: unexpected EOF"},
		{"invalid_token", `token "<script>" & 'more' — 运费`},
		{"not_found", ""},
	}
	for _, status := range []int{200, 400, 401, 404, 405, 503} {
		for name, v := range values {
			check(t, "API.Write "+name, record(func(w http.ResponseWriter) { _ = API.Write(w, status, v) }),
				record(func(w http.ResponseWriter) { payproxyBefore(w, status, v) }))
			check(t, "Token.Write "+name, record(func(w http.ResponseWriter) { _ = Token.Write(w, status, v) }),
				record(func(w http.ResponseWriter) { refreshBefore(w, status, v) }))
		}
		for _, e := range errs {
			got := record(func(w http.ResponseWriter) { _ = API.Error(w, status, e[0], e[1]) })
			check(t, "API.Error as payproxy's", got, record(func(w http.ResponseWriter) { payproxyBefore(w, status, errorBody(e[0], e[1])) }))
			check(t, "API.Error as authjwt's", got, record(func(w http.ResponseWriter) { authjwtErrorBefore(w, status, e[0], e[1]) }))
			check(t, "Token.Error", record(func(w http.ResponseWriter) { _ = Token.Error(w, status, e[0], e[1]) }),
				record(func(w http.ResponseWriter) { refreshBefore(w, status, errorBody(e[0], e[1])) }))
		}
	}
}

func check(t *testing.T, what string, got, want answer) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\ngot  %d %v %q\nwant %d %v %q", what, got.status, got.header, got.body, want.status, want.header, want.body)
	}
}

// TestAValueThatDoesNotMarshalIsA500AndWritesNothing: the handler returns
// a 500 to Caddy (as jwt_refresh did) instead of a half-written answer.
func TestAValueThatDoesNotMarshalIsA500AndWritesNothing(t *testing.T) {
	for _, f := range []Form{API, Token} {
		rec := httptest.NewRecorder()
		err := f.Write(rec, http.StatusOK, map[string]any{"f": func() {}})
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) || he.StatusCode != http.StatusInternalServerError {
			t.Fatalf("got %v, want a 500 HandlerError", err)
		}
		if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
			t.Fatalf("wrote %v %q", rec.Header(), rec.Body)
		}
	}
}
