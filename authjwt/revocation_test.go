package authjwt

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/revocation"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

func TestRevokedSessionIsRejectedWithinASecond(t *testing.T) {
	k := keys(t)
	rds := testredis.Start(t)
	pem := writePublicPEM(t, t.TempDir(), "rsa.pem", &k.rsa1.PublicKey)
	port := testcaddy.FreePort(t)
	testcaddy.Start(t, "", fmt.Sprintf(`
http://127.0.0.1:%d {
	authjwt {
		key %s
		revocation %s
	}
	respond "ok {http.auth.user.id}"
}`, port, pem, rds.URL()))

	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(func(c jwt.MapClaims) { c["sid"] = "sess-1" }))
	other := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(func(c jwt.MapClaims) { c["sid"] = "sess-2" }))
	// Seen once, so the next answers come from the token cache: the cache
	// must still respect revocation.
	for _, tk := range []string{tok, other} {
		if res := do(t, port, request{path: "/", headers: bearer(tk)}); res.status != http.StatusOK {
			t.Fatalf("before revocation: %d %s", res.status, res.body)
		}
	}
	if err := revocation.Revoke(context.Background(), rds.Client(), time.Now().Add(time.Hour), "sess-1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for {
		res := do(t, port, request{path: "/", headers: bearer(tok)})
		if res.status == http.StatusUnauthorized {
			if res.errCode != "invalid_token" || res.errDesc != "session revoked" {
				t.Errorf("revoked: %q %q", res.errCode, res.errDesc)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked session still accepted after 1s: %d %s", res.status, res.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res := do(t, port, request{path: "/", headers: bearer(other)}); res.status != http.StatusOK {
		t.Errorf("another session was affected: %d %s", res.status, res.body)
	}
}
