package authjwt

import (
	"fmt"
	"net/http"
	"strings"
)

// defaultStripHeaders are the client headers removed from every request
// when strip_headers is not given: the names identity travels under
// upstream (X-User-Id, X-User-Role, ...) and jwt_refresh's login answer
// (X-Auth-Subject, X-Auth-Claims).
var defaultStripHeaders = []string{"X-User-*", "X-Auth-*"}

// headerPatterns matches header names against exact names and prefixes
// ("X-User-*"), case-insensitively and with '_' equal to '-': CGI-style
// backends (FastCGI's HTTP_X_USER_ID) merge the two, so X-User_Id would
// otherwise pass as X-User-Id.
type headerPatterns struct {
	exact    []string // normalized names
	prefixes []string // normalized, without the '*'
}

// compileHeaderPatterns checks and normalizes patterns: a header name, or a
// name prefix followed by one '*' at the end.
func compileHeaderPatterns(patterns []string) (headerPatterns, error) {
	var p headerPatterns
	for _, pat := range patterns {
		name, wildcard := strings.CutSuffix(pat, "*")
		if name == "" || strings.Contains(name, "*") || !validHeaderName(name) {
			return headerPatterns{}, fmt.Errorf("strip_headers %q: want a header name, or a name prefix ending in *", pat)
		}
		if wildcard {
			p.prefixes = append(p.prefixes, normalizeHeaderName(name))
		} else {
			p.exact = append(p.exact, normalizeHeaderName(name))
		}
	}
	return p, nil
}

// with adds exact names (the identity headers, always stripped).
func (p headerPatterns) with(names ...string) headerPatterns {
	for _, n := range names {
		p.exact = append(p.exact, normalizeHeaderName(n))
	}
	return p
}

func (p headerPatterns) match(name string) bool {
	for _, e := range p.exact {
		if len(name) == len(e) && foldPrefix(name, e) {
			return true
		}
	}
	for _, pre := range p.prefixes {
		if len(name) >= len(pre) && foldPrefix(name, pre) {
			return true
		}
	}
	return false
}

// foldPrefix reports whether name starts with norm (already normalized),
// ignoring ASCII case and treating '_' as '-'. It allocates nothing: it runs
// on every header of every request.
func foldPrefix(name, norm string) bool {
	for i := 0; i < len(norm); i++ {
		if normalizeHeaderByte(name[i]) != norm[i] {
			return false
		}
	}
	return true
}

func normalizeHeaderByte(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + ('a' - 'A')
	case c == '_':
		return '-'
	}
	return c
}

func normalizeHeaderName(s string) string {
	b := []byte(s)
	for i := range b {
		b[i] = normalizeHeaderByte(b[i])
	}
	return string(b)
}

// validHeaderName accepts RFC 9110 token characters.
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// stripClientHeaders removes every client header matching the patterns, and
// drops their names from Connection: a client declaring X-User-Id
// hop-by-hop would make reverse_proxy remove the identity we set.
func (h *AuthJWT) stripClientHeaders(r *http.Request) {
	for name := range r.Header {
		if h.stripMatch.match(name) {
			delete(r.Header, name)
		}
	}
	conn := r.Header["Connection"]
	if len(conn) == 0 {
		return
	}
	kept, changed := make([]string, 0, 2), false
	for _, v := range conn {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			if tok == "" {
				continue
			}
			if h.stripMatch.match(tok) {
				changed = true
				continue
			}
			kept = append(kept, tok)
		}
	}
	switch {
	case !changed:
	case len(kept) == 0:
		delete(r.Header, "Connection")
	default:
		r.Header["Connection"] = []string{strings.Join(kept, ", ")}
	}
}
