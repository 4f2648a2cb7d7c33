package authjwt

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// TokenSource is one place a token is looked for.
type TokenSource struct {
	// Where to look: "header", "cookie" or "query".
	From string `json:"from"`
	// The header, cookie or query parameter name.
	Name string `json:"name"`
}

var errMultipleTokens = errors.New("more than one token in the request")

// extractToken returns the token found in the sources, in order. A token
// given twice (the same value) is fine; two different tokens are refused
// rather than guessing which one the client meant. A query token is always
// removed from the URL so the upstream and its logs never see it.
func extractToken(r *http.Request, sources []TokenSource) (string, error) {
	var found string
	var conflict bool
	take := func(tok string) {
		if tok == "" {
			return
		}
		if found != "" && found != tok {
			conflict = true
			return
		}
		found = tok
	}
	for _, src := range sources {
		switch src.From {
		case "header":
			for _, v := range r.Header.Values(src.Name) {
				take(headerToken(v))
			}
		case "cookie":
			for _, c := range r.Cookies() {
				if c.Name == src.Name {
					take(c.Value)
				}
			}
		case "query":
			for _, v := range removeQueryParam(r, src.Name) {
				take(v)
			}
		}
	}
	if conflict {
		return "", errMultipleTokens
	}
	return found, nil
}

// headerToken accepts "Bearer <jwt>" (any case) and a bare "<jwt>", which
// the platform's older clients send. Another scheme (Basic, ...) is not
// ours and yields no token.
func headerToken(v string) string {
	v = strings.TrimSpace(v)
	if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		return strings.TrimSpace(v[7:])
	}
	if strings.ContainsAny(v, " \t") {
		return ""
	}
	return v
}

// removeQueryParam deletes every occurrence of name from the request's
// query, keeping the other parameters byte for byte and in order, and
// returns the removed values.
func removeQueryParam(r *http.Request, name string) []string {
	raw := r.URL.RawQuery
	if raw == "" || !strings.Contains(raw, name) {
		return nil
	}
	var values []string
	removed := false
	kept := make([]string, 0, strings.Count(raw, "&")+1)
	for part := range strings.SplitSeq(raw, "&") {
		key, val, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(key); err == nil && k == name {
			removed = true
			if v, err := url.QueryUnescape(val); err == nil {
				values = append(values, v)
			}
			continue
		}
		kept = append(kept, part)
	}
	if !removed {
		return nil
	}
	r.URL.RawQuery = strings.Join(kept, "&")
	// Caddy's {uri} placeholders and access logs read RequestURI.
	if r.RequestURI != "" {
		r.RequestURI = r.URL.RequestURI()
	}
	return values
}
