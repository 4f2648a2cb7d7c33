package authjwt

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/revocation"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// Every authjwt value that is a key path, a secret, or a URL that may
// carry credentials takes {env.*} and {file.*}: kept as written by adapt,
// resolved when the config is provisioned, and what it resolves to is
// what is used (the key verifies, the JWK Set is fetched with the
// credentials, the watcher hears that Redis).
func TestEverySecretPathAndURLTakesEnvAndFilePlaceholders(t *testing.T) {
	k := keys(t)
	dir := t.TempDir()
	pem := writePublicPEM(t, dir, "rsa.pem", &k.rsa1.PublicKey)
	jwksFile := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwksFile, jwksJSON(map[string]*rsa.PublicKey{"k1": &k.rsa1.PublicKey}), 0o600); err != nil {
		t.Fatal(err)
	}
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "gw" || pass != "idp-secret-31ab" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(jwksJSON(map[string]*rsa.PublicKey{"k1": &k.rsa1.PublicKey}))
	}))
	t.Cleanup(idp.Close)
	const redisPassword = "redis-password-6e0f"
	rds := testredis.StartWithPassword(t, redisPassword)
	secret := strings.Repeat("0123456789", 4)
	rsaToken := sign(t, jwt.SigningMethodRS256, k.rsa1, "k1", claims())
	verifies := func(tok string) func(*testing.T, *AuthJWT) {
		return func(t *testing.T, h *AuthJWT) {
			if _, rej := h.verifyToken(tok, time.Now()); rej != nil {
				t.Errorf("token refused: %+v", rej)
			}
		}
	}
	hearsRedis := func(t *testing.T, h *AuthJWT) {
		pub := redis.NewClient(&redis.Options{Addr: rds.Addr(), Password: redisPassword})
		defer pub.Close()
		sid := "ph-" + fmt.Sprint(time.Now().UnixNano())
		if err := revocation.Revoke(t.Context(), pub, time.Now().Add(time.Minute), sid); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 10*time.Second, "the watcher never heard the revocation", func() bool { return h.revoked.Revoked(sid) })
	}
	cases := []struct {
		name, value, body string
		check             func(*testing.T, *AuthJWT)
	}{
		{"key path", pem, "key %s k1", verifies(rsaToken)},
		{"jwks file", jwksFile, "jwks %s", verifies(rsaToken)},
		{"jwks URL with credentials", strings.Replace(idp.URL, "http://", "http://gw:idp-secret-31ab@", 1) + "/jwks.json", "jwks %s", verifies(rsaToken)},
		{"hmac_secret", secret, "hmac_secret %s", verifies(sign(t, jwt.SigningMethodHS256, []byte(secret), "", claims()))},
		{"revocation URL", "redis://:" + redisPassword + "@" + rds.Addr() + "/0", "key " + pem + "\n\t\trevocation %s", hearsRedis},
		{"revocation password", redisPassword, "key " + pem + "\n\t\trevocation redis://" + rds.Addr() + "/0 {\n\t\t\tpassword %s\n\t\t}", hearsRedis},
	}
	for _, c := range cases {
		testcaddy.EachPlaceholderForm(t, c.name, c.value, func(t *testing.T, ph string) {
			raw := handlerJSON(t, "authjwt {\n\t\t"+fmt.Sprintf(c.body, ph)+"\n\t}")
			if !strings.Contains(string(raw), ph) {
				t.Fatalf("adapt did not keep %s as written: %s", ph, raw)
			}
			var h AuthJWT
			if err := json.Unmarshal(raw, &h); err != nil {
				t.Fatal(err)
			}
			c.check(t, provisioned(t, &h))
		})
	}
}
