package authjwt

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

func TestHeaderTokenForms(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc.def.ghi": "abc.def.ghi",
		"bearer abc.def.ghi": "abc.def.ghi",
		"abc.def.ghi":        "abc.def.ghi",
		"  abc.def.ghi  ":    "abc.def.ghi",
		"Basic dXNlcjpwdw==": "",
		"":                   "",
	} {
		if got := headerToken(in); got != want {
			t.Errorf("headerToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestQueryTokenIsRemovedKeepingOtherParameters(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/a?b=1&access_token=T1&c=%20x&access_token=T1", nil)
	tok, err := extractToken(r, []TokenSource{{From: "query", Name: "access_token"}})
	if err != nil || tok != "T1" {
		t.Fatalf("token %q, err %v", tok, err)
	}
	if r.URL.RawQuery != "b=1&c=%20x" || r.RequestURI != "/a?b=1&c=%20x" {
		t.Errorf("RawQuery %q RequestURI %q", r.URL.RawQuery, r.RequestURI)
	}
}

func TestTwoDifferentTokensConflict(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/a?t=B", nil)
	r.Header.Set("Authorization", "Bearer A")
	if _, err := extractToken(r, []TokenSource{{"header", "Authorization"}, {"query", "t"}}); err != errMultipleTokens {
		t.Fatalf("err %v", err)
	}
	r = httptest.NewRequest(http.MethodGet, "/a?t=A", nil)
	r.Header.Set("Authorization", "A")
	if tok, err := extractToken(r, []TokenSource{{"header", "Authorization"}, {"query", "t"}}); err != nil || tok != "A" {
		t.Fatalf("same token twice: %q %v", tok, err)
	}
}

// FuzzExtractAndParse feeds arbitrary header, cookie and query values
// through extraction and verification: nothing may panic, and without a
// real signature nothing may ever be let through.
func FuzzExtractAndParse(f *testing.F) {
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "", "")
	f.Add("abc.def", "access_token=x.y.z", "access_token=a.b.c")
	f.Add("", "", "access_token=%zz")
	f.Add("Bearer ", "access_token=", "access_token")
	k := keys(f)
	h := provisioned(f, &AuthJWT{
		Keys: []KeyFile{{File: writePublicPEM(f, f.TempDir(), "k.pem", &k.ec256.PublicKey), Kid: "k1"}},
		From: []TokenSource{{"header", "Authorization"}, {"cookie", "access_token"}, {"query", "access_token"}},
	})
	f.Fuzz(func(t *testing.T, header, cookie, query string) {
		r := httptest.NewRequest(http.MethodGet, "/x", nil)
		r.URL.RawQuery = query
		r.RequestURI = "/x?" + query
		r.Header.Set("Authorization", header)
		r.Header.Set("Cookie", cookie)
		w, next, _ := serve(t, h, r)
		if next.called || w.Code != http.StatusUnauthorized {
			t.Fatalf("let through or wrong status %d (header %q cookie %q query %q)", w.Code, header, cookie, query)
		}
		if q, _ := url.ParseQuery(r.URL.RawQuery); q.Has("access_token") && r.URL.RawQuery != query {
			t.Fatalf("query token left in %q", r.URL.RawQuery)
		}
	})
}
