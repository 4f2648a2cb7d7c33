package authjwt

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/revocation"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

func TestRevokedSessionIsRejectedWithinASecond(t *testing.T) {
	rds := testredis.Start(t)
	port := startRevocationSite(t, rds.URL())
	revokeAndExpectRejection(t, port, rds.Client(), time.Second, "sess-1", "sess-2")
}

// TestRevocationOverClusterAndSentinel: the same through a real
// three-master Cluster (pub/sub spans the nodes) and through Sentinel,
// where a revocation published on the promoted master after a failover
// must still arrive.
func TestRevocationOverClusterAndSentinel(t *testing.T) {
	t.Run("cluster", func(t *testing.T) {
		cluster := testredis.StartCluster(t, 3)
		port := startRevocationSite(t, cluster.URL())
		revokeAndExpectRejection(t, port, cluster.Client(), time.Second, "c-sess-1", "c-sess-2")
	})
	t.Run("sentinel_failover", func(t *testing.T) {
		set := testredis.StartSentinel(t)
		port := startRevocationSite(t, set.URL())
		revokeAndExpectRejection(t, port, set.Master.Client(), time.Second, "s-sess-1", "s-sess-2")
		set.Failover()
		// The promoted replica is the master now; the watcher must hear it
		// (re-subscribed, or through the old master replicating the
		// message). 5 s leaves room for a reconnection's backoff.
		revokeAndExpectRejection(t, port, set.Replica.Client(), 5*time.Second, "s-sess-3", "s-sess-4")
	})
}

// startRevocationSite runs authjwt with revocation on redisURL.
func startRevocationSite(t *testing.T, redisURL string) int {
	t.Helper()
	return startAuthSite(t, "revocation "+redisURL, `respond "ok {http.auth.user.id}"`)
}

// revokeAndExpectRejection revokes session sid through rdb: its token must
// be refused within the given time, and the token of session other must
// still pass.
func revokeAndExpectRejection(t *testing.T, port int, rdb redis.UniversalClient, within time.Duration, sid, other string) {
	t.Helper()
	k := keys(t)
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(func(c jwt.MapClaims) { c["sid"] = sid }))
	otherTok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims(func(c jwt.MapClaims) { c["sid"] = other }))
	// Seen once, so the next answers come from the token cache: the cache
	// must still respect revocation.
	for _, tk := range []string{tok, otherTok} {
		if res := do(t, port, request{path: "/", headers: bearer(tk)}); res.status != http.StatusOK {
			t.Fatalf("before revocation: %d %s", res.status, res.body)
		}
	}
	if err := revocation.Revoke(context.Background(), rdb, time.Now().Add(time.Hour), sid); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		res := do(t, port, request{path: "/", headers: bearer(tok)})
		if res.status == http.StatusUnauthorized {
			if res.errCode != "invalid_token" || res.errDesc != "session revoked" {
				t.Errorf("revoked: %q %q", res.errCode, res.errDesc)
			}
			break
		}
		if time.Since(start) > within {
			t.Fatalf("revoked session %s still accepted after %s: %d %s", sid, within, res.status, res.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("session %s refused %s after the revocation", sid, time.Since(start).Round(time.Millisecond))
	if res := do(t, port, request{path: "/", headers: bearer(otherTok)}); res.status != http.StatusOK {
		t.Errorf("another session was affected: %d %s", res.status, res.body)
	}
}

// The seed's long-lived refresh tokens ({userId, exp}, RS256, no typ, no
// sid) verify with the same keys as access tokens: with revocation on they
// would be access tokens nobody can ever revoke. They are refused unless
// allow_without_sid says the site accepts such tokens on purpose.
func TestTokenWithoutSidIsRefusedWhenRevocationIsOn(t *testing.T) {
	rds := testredis.Start(t)
	k := keys(t)
	pem := writePublicPEM(t, t.TempDir(), "rsa.pem", &k.rsa1.PublicKey)
	strict, lenient := testcaddy.FreePort(t), testcaddy.FreePort(t)
	testcaddy.Start(t, "", fmt.Sprintf(`
http://127.0.0.1:%d {
	authjwt {
		key %s
		user_claim userId
		revocation %s
	}
	respond "ok {http.auth.user.id}"
}
http://127.0.0.1:%d {
	authjwt {
		key %s
		user_claim userId
		revocation %s {
			allow_without_sid
		}
	}
	respond "ok {http.auth.user.id}"
}`, strict, pem, rds.URL(), lenient, pem, rds.URL()))
	seed := sign(t, jwt.SigningMethodRS256, k.rsa1, "", jwt.MapClaims{
		"userId": 10138000, "exp": time.Now().Add(72 * time.Hour).Unix()})
	res := do(t, strict, request{path: "/", headers: bearer(seed)})
	if res.status != http.StatusUnauthorized || res.errCode != "invalid_token" || res.errDesc != "token cannot be revoked" {
		t.Errorf("seed-shaped token: %d %q %q, want 401 invalid_token \"token cannot be revoked\"", res.status, res.errCode, res.errDesc)
	}
	empty := sign(t, jwt.SigningMethodRS256, k.rsa1, "", jwt.MapClaims{
		"userId": 7, "sid": "", "exp": time.Now().Add(time.Hour).Unix()})
	if res := do(t, strict, request{path: "/", headers: bearer(empty)}); res.status != http.StatusUnauthorized {
		t.Errorf("empty sid: %d %s", res.status, res.body)
	}
	if res := do(t, lenient, request{path: "/", headers: bearer(seed)}); res.status != http.StatusOK || res.body != "ok 10138000" {
		t.Errorf("allow_without_sid: %d %s", res.status, res.body)
	}
	withSid := sign(t, jwt.SigningMethodRS256, k.rsa1, "", jwt.MapClaims{
		"userId": 7, "sid": "s-1", "exp": time.Now().Add(time.Hour).Unix()})
	if res := do(t, strict, request{path: "/", headers: bearer(withSid)}); res.status != http.StatusOK {
		t.Errorf("a token with a sid: %d %s", res.status, res.body)
	}
}
