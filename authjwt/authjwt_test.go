package authjwt

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/testcaddy"
)

// response is what a test request got back.
type response struct {
	status    int
	challenge string
	body      string
	errCode   string
	errDesc   string
}

type request struct {
	method  string
	path    string
	headers map[string]string
}

func do(t *testing.T, port int, req request) response {
	t.Helper()
	method := req.method
	if method == "" {
		method = http.MethodGet
	}
	r, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", port, req.path), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range req.headers {
		r.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := response{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate"), body: string(body)}
	var e struct {
		Error string `json:"error"`
		Desc  string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) == nil {
		out.errCode, out.errDesc = e.Error, e.Desc
	}
	return out
}

func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// echoBackend is the upstream: it reports what it received.
func echoBackend(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{
			"x_user_id": r.Header.Get("X-User-Id"),
			"x_roles":   r.Header.Get("X-Roles"),
			"uri":       r.RequestURI,
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func upstreamSaw(t *testing.T, res response) map[string]string {
	t.Helper()
	if res.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", res.status, res.body)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(res.body), &m); err != nil {
		t.Fatalf("upstream body %q: %v", res.body, err)
	}
	return m
}

func TestAuthJWTOverRealCaddy(t *testing.T) {
	k := keys(t)
	dir := t.TempDir()
	// Set before Caddy starts and restored after it stopped (cleanups run
	// last-in first-out): its goroutines only read it.
	saved := jwksMissInterval
	t.Cleanup(func() { jwksMissInterval = saved })
	jwksMissInterval = time.Second
	rsaPEM := writePublicPEM(t, dir, "rsa1.pem", &k.rsa1.PublicKey)
	ecCert := writeCertPEM(t, dir, "ec.crt", k.ec256)
	backend := echoBackend(t)

	var published atomic.Pointer[[]byte]
	setJWKS := func(b []byte) { published.Store(&b) }
	setJWKS(jwksJSON(map[string]*rsa.PublicKey{"old": &k.rsa2.PublicKey}))
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*published.Load())
	}))
	t.Cleanup(jwksSrv.Close)

	t.Setenv("TOLLGATE_TEST_HMAC", strings.Repeat("s", 40))
	pMain, pRoles, pJWKS, pPreflight, pHMAC := testcaddy.FreePort(t), testcaddy.FreePort(t),
		testcaddy.FreePort(t), testcaddy.FreePort(t), testcaddy.FreePort(t)
	sites := fmt.Sprintf(`
http://127.0.0.1:%d {
	authjwt {
		key %s k1
		key %s ec
		issuer https://auth.example
		audience gateway mobile
		from header Authorization
		from cookie access_token
		from query access_token
		allow /public/* /health
		claim_header roles X-Roles
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	authjwt {
		key %s
		require_role admin dispatcher
	}
	respond "ok {http.auth.user.id} {http.auth.user.roles}"
}
http://127.0.0.1:%d {
	authjwt {
		jwks %s/jwks.json refresh 1h
	}
	respond "ok {http.auth.user.id}"
}
http://127.0.0.1:%d {
	authjwt {
		key %s
		preflight require
	}
	respond "ok"
}
http://127.0.0.1:%d {
	authjwt {
		hmac_secret {env.TOLLGATE_TEST_HMAC}
		user_claim userId
		user_header X-Uid
	}
	respond "ok {http.auth.user.id} {http.request.header.X-Uid}"
}
`, pMain, rsaPEM, ecCert, strings.TrimPrefix(backend.URL, "http://"),
		pRoles, rsaPEM, pJWKS, jwksSrv.URL, pPreflight, rsaPEM, pHMAC)
	// A roomy header limit, so the 64 KiB token reaches authjwt itself.
	testcaddy.Start(t, "\tservers {\n\t\tmax_header_size 1MB\n\t}", sites)

	good := sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", claims())
	pemBytes := publicPEM(mustPKIX(t, &k.rsa1.PublicKey))

	rejects := []struct {
		name     string
		req      request
		status   int
		code     string
		descHas  string
		bareAuth bool
	}{
		{"NoTokenGetsBareChallenge", request{path: "/orders"}, 401, "unauthorized", "", true},
		{"TwoPartTokenIsMalformed", request{path: "/orders", headers: bearer("abc.def")}, 401, "invalid_token", "malformed", false},
		{"BadBase64IsMalformed", request{path: "/orders", headers: bearer("!!!.@@@.###")}, 401, "invalid_token", "malformed", false},
		{"BadJSONIsMalformed", request{path: "/orders", headers: bearer(b64("not json") + "." + b64("{}") + ".c2ln")}, 401, "invalid_token", "malformed", false},
		{"HugeHeaderIsRefused", request{path: "/orders", headers: bearer(strings.Repeat("a", 64<<10))}, 401, "invalid_token", "malformed", false},
		{"AlgNoneIsRefused", request{path: "/orders", headers: bearer(unsignedToken(claims()))}, 401, "invalid_token", "", false},
		{"HS256WithPublicKeyAsSecretIsRefused", request{path: "/orders", headers: bearer(sign(t, jwt.SigningMethodHS256, pemBytes, "k1", claims()))}, 401, "invalid_token", "algorithm", false},
		{"TokenFromAnotherKeyIsRefused", request{path: "/orders", headers: bearer(sign(t, jwt.SigningMethodRS256, k.rsa2, "k1", claims()))}, 401, "invalid_token", "signature", false},
		{"ExpiredTokenSaysExpired", request{path: "/orders", headers: bearer(sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", claims(func(c jwt.MapClaims) {
			c["exp"] = time.Now().Add(-2 * time.Minute).Unix()
		})))}, 401, "invalid_token", "expired", false},
		{"NotBeforeInTheFutureIsRefused", request{path: "/orders", headers: bearer(sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", claims(func(c jwt.MapClaims) {
			c["nbf"] = time.Now().Add(5 * time.Minute).Unix()
		})))}, 401, "invalid_token", "not valid yet", false},
		{"MissingExpIsRefused", request{path: "/orders", headers: bearer(sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", claims(func(c jwt.MapClaims) { delete(c, "exp") })))}, 401, "invalid_token", "exp", false},
		{"WrongIssuerIsRefused", request{path: "/orders", headers: bearer(sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })))}, 401, "invalid_token", "issuer", false},
		{"WrongAudienceIsRefused", request{path: "/orders", headers: bearer(sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", claims(func(c jwt.MapClaims) { c["aud"] = "billing" })))}, 401, "invalid_token", "audience", false},
		{"UnknownKidIsRefused", request{path: "/orders", headers: bearer(sign(t, jwt.SigningMethodRS256, k.rsa1, "k9", claims()))}, 401, "invalid_token", "unknown key id", false},
		{"RefreshTokenIsNotAnAccessToken", request{path: "/orders", headers: bearer(sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", claims(func(c jwt.MapClaims) { c["typ"] = "refresh" })))}, 401, "invalid_token", "refresh", false},
		{"TwoDifferentTokensAreRefused", request{path: "/orders", headers: map[string]string{
			"Authorization": "Bearer " + good,
			"Cookie":        "access_token=" + sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", claims(func(c jwt.MapClaims) { c["sub"] = "other" })),
		}}, 401, "invalid_token", "more than one token", false},
	}
	for _, tc := range rejects {
		t.Run(tc.name, func(t *testing.T) {
			res := do(t, pMain, tc.req)
			if res.status != tc.status || res.errCode != tc.code {
				t.Fatalf("got %d %q (%s), want %d %q", res.status, res.errCode, res.body, tc.status, tc.code)
			}
			if !strings.Contains(res.errDesc, tc.descHas) {
				t.Errorf("error_description %q does not contain %q", res.errDesc, tc.descHas)
			}
			if tc.bareAuth && res.challenge != "Bearer" {
				t.Errorf("WWW-Authenticate %q, want bare Bearer", res.challenge)
			}
			if !tc.bareAuth && !strings.HasPrefix(res.challenge, `Bearer error="invalid_token", error_description="`) {
				t.Errorf("WWW-Authenticate %q", res.challenge)
			}
			if strings.Contains(res.body, "user-42") {
				t.Errorf("upstream answered: %s", res.body)
			}
		})
	}

	t.Run("EverySourceIsAccepted", func(t *testing.T) {
		for name, req := range map[string]request{
			"HeaderBearer": {path: "/orders", headers: bearer(good)},
			"HeaderBare":   {path: "/orders", headers: map[string]string{"Authorization": good}},
			"Cookie":       {path: "/orders", headers: map[string]string{"Cookie": "a=b; access_token=" + good}},
			"Query":        {path: "/orders?x=1&access_token=" + good + "&y=2"},
		} {
			saw := upstreamSaw(t, do(t, pMain, req))
			if saw["x_user_id"] != "user-42" || saw["x_roles"] != "courier" {
				t.Errorf("%s: upstream saw %v", name, saw)
			}
			if strings.Contains(saw["uri"], "access_token") || strings.Contains(saw["uri"], good) {
				t.Errorf("%s: token reached the upstream URL %q", name, saw["uri"])
			}
			if name == "Query" && saw["uri"] != "/orders?x=1&y=2" {
				t.Errorf("query: upstream URI %q, want /orders?x=1&y=2", saw["uri"])
			}
		}
	})

	t.Run("ECDSACertificateKeyIsAccepted", func(t *testing.T) {
		tok := sign(t, jwt.SigningMethodES256, k.ec256, "ec", claims())
		if saw := upstreamSaw(t, do(t, pMain, request{path: "/orders", headers: bearer(tok)})); saw["x_user_id"] != "user-42" {
			t.Errorf("upstream saw %v", saw)
		}
	})

	t.Run("SpoofedUserIdNeverReachesUpstream", func(t *testing.T) {
		h := bearer(good)
		h["X-User-Id"] = "admin"
		h["X-Roles"] = "admin"
		if saw := upstreamSaw(t, do(t, pMain, request{path: "/orders", headers: h})); saw["x_user_id"] != "user-42" || saw["x_roles"] != "courier" {
			t.Errorf("protected path: upstream saw %v", saw)
		}
		spoof := map[string]string{"X-User-Id": "admin", "X-Roles": "admin"}
		if saw := upstreamSaw(t, do(t, pMain, request{path: "/public/menu", headers: spoof})); saw["x_user_id"] != "" || saw["x_roles"] != "" {
			t.Errorf("whitelisted path: upstream saw %v", saw)
		}
	})

	t.Run("WhitelistedPathSetsIdentityFromValidTokenAndIgnoresInvalid", func(t *testing.T) {
		if saw := upstreamSaw(t, do(t, pMain, request{path: "/health", headers: bearer(good)})); saw["x_user_id"] != "user-42" {
			t.Errorf("valid token: upstream saw %v", saw)
		}
		h := bearer("abc.def")
		h["X-User-Id"] = "admin"
		if saw := upstreamSaw(t, do(t, pMain, request{path: "/public/x", headers: h})); saw["x_user_id"] != "" {
			t.Errorf("invalid token: upstream saw %v", saw)
		}
	})

	t.Run("PreflightPassesWithoutToken", func(t *testing.T) {
		req := request{method: http.MethodOptions, path: "/orders", headers: map[string]string{
			"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}}
		if res := do(t, pMain, req); res.status != http.StatusOK {
			t.Errorf("preflight: %d %s", res.status, res.body)
		}
		if res := do(t, pPreflight, req); res.status != http.StatusUnauthorized {
			t.Errorf("preflight require: %d %s", res.status, res.body)
		}
		if res := do(t, pMain, request{method: http.MethodOptions, path: "/orders"}); res.status != http.StatusUnauthorized {
			t.Errorf("plain OPTIONS: %d", res.status)
		}
	})

	t.Run("RolesAsArrayAndAsString", func(t *testing.T) {
		for name, tc := range map[string]struct {
			roles  any
			status int
		}{
			"ArrayWithRole":    {[]string{"courier", "dispatcher"}, 200},
			"StringWithRole":   {"courier admin", 200},
			"ArrayWithoutRole": {[]string{"courier"}, 403},
			"StringWithout":    {"courier", 403},
			"NoRolesClaim":     {nil, 403},
		} {
			tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(func(c jwt.MapClaims) {
				if tc.roles == nil {
					delete(c, "roles")
				} else {
					c["roles"] = tc.roles
				}
			}))
			res := do(t, pRoles, request{path: "/", headers: bearer(tok)})
			if res.status != tc.status {
				t.Errorf("%s: %d %s", name, res.status, res.body)
			}
			if tc.status == 403 && (res.errCode != "insufficient_scope" || !strings.Contains(res.challenge, `error="insufficient_scope"`)) {
				t.Errorf("%s: %q %q", name, res.errCode, res.challenge)
			}
			if tc.status == 200 && !strings.HasPrefix(res.body, "ok user-42 ") {
				t.Errorf("%s: body %q", name, res.body)
			}
		}
	})

	t.Run("HMACSecretFromEnvAndUserClaim", func(t *testing.T) {
		secret := []byte(strings.Repeat("s", 40))
		tok := sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c jwt.MapClaims) { c["userId"] = 1234567890123456789 }))
		if res := do(t, pHMAC, request{path: "/", headers: bearer(tok)}); res.status != 200 || res.body != "ok 1234567890123456789 1234567890123456789" {
			t.Errorf("%d %q", res.status, res.body)
		}
		rsaTok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims())
		if res := do(t, pHMAC, request{path: "/", headers: bearer(rsaTok)}); res.status != 401 {
			t.Errorf("RS256 at an HMAC site: %d", res.status)
		}
	})

	t.Run("JWKSRotationWhileRunning", func(t *testing.T) {
		oldTok := sign(t, jwt.SigningMethodRS256, k.rsa2, "old", claims())
		newTok := sign(t, jwt.SigningMethodRS256, k.rsa3, "new", claims(func(c jwt.MapClaims) { c["sub"] = "user-new" }))
		if res := do(t, pJWKS, request{path: "/", headers: bearer(oldTok)}); res.body != "ok user-42" {
			t.Fatalf("old key before rotation: %d %s", res.status, res.body)
		}
		if res := do(t, pJWKS, request{path: "/", headers: bearer(newTok)}); res.status != 401 || res.errDesc != "unknown key id" {
			t.Fatalf("new key before publication: %d %s", res.status, res.body)
		}
		setJWKS(jwksJSON(map[string]*rsa.PublicKey{"new": &k.rsa3.PublicKey}))
		// The refetch on an unknown kid is rate-limited: poll until it is
		// allowed again, with a deadline.
		deadline := time.Now().Add(2*jwksMissInterval + 5*time.Second)
		for {
			res := do(t, pJWKS, request{path: "/", headers: bearer(newTok)})
			if res.body == "ok user-new" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("new key never accepted: %d %s", res.status, res.body)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if res := do(t, pJWKS, request{path: "/", headers: bearer(oldTok)}); res.status != 401 {
			t.Errorf("old key after rotation: %d %s", res.status, res.body)
		}
	})
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func mustPKIX(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return der
}
