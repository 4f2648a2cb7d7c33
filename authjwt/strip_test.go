package authjwt

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/testcaddy"
)

// headerBackend answers with every request header it received.
func headerBackend(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// upstreamHeaders sends one request and returns the headers the upstream
// received.
func upstreamHeaders(t *testing.T, port int, req request) http.Header {
	t.Helper()
	res := do(t, port, req)
	if res.status != http.StatusOK {
		t.Fatalf("%s: status %d %s", req.path, res.status, res.body)
	}
	var h http.Header
	if err := json.Unmarshal([]byte(res.body), &h); err != nil {
		t.Fatalf("upstream body %q: %v", res.body, err)
	}
	return h
}

// A client that sends X-User-Role: admin (or any X-User-*/X-Auth-* header,
// in any case, with underscores) must never reach the upstream with it, on
// any path; and a Connection header naming X-User-Id must not make the
// proxy drop the identity authjwt set.
func TestClientSentIdentityHeadersNeverReachTheUpstream(t *testing.T) {
	k := keys(t)
	pem := writePublicPEM(t, t.TempDir(), "rsa.pem", &k.rsa1.PublicKey)
	backend := strings.TrimPrefix(headerBackend(t).URL, "http://")
	pDefault, pCustom := testcaddy.FreePort(t), testcaddy.FreePort(t)
	testcaddy.Start(t, "", fmt.Sprintf(`
http://127.0.0.1:%d {
	authjwt {
		key %s
		allow /public/*
		claim_header tenant X-Tenant
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	authjwt {
		key %s
		strip_headers X-Internal-* x-debug-user
	}
	reverse_proxy %s
}`, pDefault, pem, backend, pCustom, pem, backend))
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(func(c jwt.MapClaims) { c["tenant"] = "t-1" }))
	spoofed := map[string]string{
		"X-User-Role":      "admin",
		"x-user-roles":     "admin",
		"X-USER-ID":        "1",
		"X-Auth-Subject":   "1",
		"X-Auth-Claims":    `{"roles":["admin"]}`,
		"X-User_Tenant":    "evil",
		"X-Tenant":         "evil",
		"X-Userland":       "kept", // not X-User-*: passes
		"X-Internal-Debug": "kept at the default site",
	}
	onlyVerified := func(t *testing.T, h http.Header, wantUser, wantTenant string) {
		t.Helper()
		for name, vals := range h {
			n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
			if (strings.HasPrefix(n, "x-user-") || strings.HasPrefix(n, "x-auth-")) && n != "x-user-id" {
				t.Errorf("client-sent %s: %q reached the upstream", name, vals)
			}
		}
		if got := h.Values("X-User-Id"); wantUser == "" && len(got) > 0 || wantUser != "" && (len(got) != 1 || got[0] != wantUser) {
			t.Errorf("upstream X-User-Id %q, want %q", got, wantUser)
		}
		if got := h.Get("X-Tenant"); got != wantTenant {
			t.Errorf("upstream X-Tenant %q, want %q", got, wantTenant)
		}
		if h.Get("X-Userland") != "kept" {
			t.Errorf("an unrelated header was removed: %v", h)
		}
	}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range spoofed {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	t.Run("ProtectedPath", func(t *testing.T) {
		h := upstreamHeaders(t, pDefault, request{path: "/orders", headers: with(bearer(tok))})
		onlyVerified(t, h, "user-42", "t-1")
	})
	t.Run("AllowedPathWithoutToken", func(t *testing.T) {
		onlyVerified(t, upstreamHeaders(t, pDefault, request{path: "/public/x", headers: with(nil)}), "", "")
	})
	t.Run("AllowedPathWithInvalidToken", func(t *testing.T) {
		onlyVerified(t, upstreamHeaders(t, pDefault, request{path: "/public/x", headers: with(bearer("a.b.c"))}), "", "")
	})
	t.Run("ConnectionNamingTheIdentityHeader", func(t *testing.T) {
		h := upstreamHeaders(t, pDefault, request{path: "/orders", headers: with(map[string]string{
			"Authorization": "Bearer " + tok, "Connection": "X-User-Id, x-tenant, keep-alive"})})
		onlyVerified(t, h, "user-42", "t-1")
	})
	t.Run("StripHeadersReplacesThePatterns", func(t *testing.T) {
		h := upstreamHeaders(t, pCustom, request{path: "/orders", headers: map[string]string{
			"Authorization": "Bearer " + tok, "X-Internal-Debug": "1", "X-Debug-User": "root",
			"X-User-Id": "1", "X-Auth-Subject": "kept"}})
		if h.Get("X-Internal-Debug") != "" || h.Get("X-Debug-User") != "" {
			t.Errorf("strip_headers patterns not applied: %v", h)
		}
		if h.Get("X-User-Id") != "user-42" {
			t.Errorf("the identity header is always stripped and set: %q", h.Values("X-User-Id"))
		}
		if h.Get("X-Auth-Subject") != "kept" {
			t.Errorf("strip_headers replaces the default patterns: %v", h)
		}
	})
}

// What payproxy's order_source and every other handler read as identity,
// {http.auth.user.id} and {http.auth.user.<claim>}, is what authjwt
// verified and nothing else: a client's headers, query or an invalid token
// on a whitelisted path leave them empty.
func TestIdentityPlaceholdersComeOnlyFromAVerifiedToken(t *testing.T) {
	port := startAuthSite(t, "allow /public/*", `respond "{http.auth.user.id}|{http.auth.user.roles}|{http.auth.user.tenant}"`)
	k := keys(t)
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(func(c jwt.MapClaims) { c["tenant"] = "t-1" }))
	spoof := map[string]string{"X-User-Id": "admin", "X-User-Roles": "admin", "X-Auth-User-Id": "admin"}
	const unset = "{http.auth.user.id}|{http.auth.user.roles}|{http.auth.user.tenant}"
	for name, tc := range map[string]struct {
		req  request
		want string
	}{
		"verified": {request{path: "/orders", headers: with(spoof, bearer(tok))}, "user-42|courier|t-1"},
		// respond leaves a placeholder nobody set as written.
		"no token":      {request{path: "/public/x?http.auth.user.id=admin", headers: spoof}, unset},
		"invalid token": {request{path: "/public/x", headers: with(spoof, bearer("a.b.c"))}, unset},
	} {
		if res := do(t, port, tc.req); res.status != http.StatusOK || res.body != tc.want {
			t.Errorf("%s: %d %q, want %q", name, res.status, res.body, tc.want)
		}
	}
}

func with(maps ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
