package refresh

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/testkeys"
)

const seedPrefix = "SL_CUSTOMER_REFRESH_TOKEN_"

// seedRefreshToken does what the seed's TokenServiceImpl.createRefreshToken
// does: JwtUtils.createToken(claims{userId: <Long>}, privateKey, ttlHours)
// (jjwt, RS256, header {"alg":"RS256"}, claims userId and exp), then
// stringRedisTemplate.opsForValue().set(PREFIX + SecureUtil.md5(token),
// token, Duration.ofHours(ttl)).
func seedRefreshToken(t *testing.T, e *env, userID int64, ttlHours int) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"userId": userID,
		"exp":    time.Now().Add(time.Duration(ttlHours) * time.Hour).Unix(),
	})
	delete(tok.Header, "typ") // jjwt writes only "alg"
	s, err := tok.SignedString(testKeys(t).rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum([]byte(s)) // hutool SecureUtil.md5: lowercase hex of the UTF-8 bytes
	key := seedPrefix + hex.EncodeToString(sum[:])
	if err := e.rd.Client().Set(context.Background(), key, s, time.Duration(ttlHours)*time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

func legacyEnv(t *testing.T) *env {
	return startEnv(t, "legacy_prefix "+seedPrefix+"\n\t\tlegacy_key "+testKeys(t).rsaPub)
}

func TestLegacyTokenIsExchangedOnceThenRefused(t *testing.T) {
	e := legacyEnv(t)
	old := seedRefreshToken(t, e, 1024, 24)
	r := refreshWith(t, e.base, old)
	expectStatus(t, r, http.StatusOK, "")
	c := claimsOf(t, r.pair.RefreshToken)
	if c["sub"] != "1024" || c["userId"] != "1024" || c["gen"] != 1.0 || c["typ"] != "refresh" {
		t.Fatalf("migrated session claims %v", c)
	}
	if n := e.rd.Client().Exists(t.Context(), legacyKey(seedPrefix, old)).Val(); n != 0 {
		t.Fatal("legacy key still in Redis")
	}
	expectStatus(t, refreshWith(t, e.base, old), http.StatusBadRequest, "invalid_grant")
	// The new session is a normal one.
	expectStatus(t, refreshWith(t, e.base, r.pair.RefreshToken), http.StatusOK, "")
}

func TestLegacyTokenRaceHasOneWinner(t *testing.T) {
	e := legacyEnv(t)
	old := seedRefreshToken(t, e, 77, 24)
	var wg sync.WaitGroup
	statuses := make([]int, 10)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = refreshWith(t, e.base, old).status
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		if s == http.StatusOK {
			ok++
		}
	}
	if ok != 1 {
		t.Fatalf("%d of 10 concurrent legacy exchanges succeeded: %v", ok, statuses)
	}
	if n := e.rd.Client().ZCard(t.Context(), indexKey(testRealm, "77")).Val(); n != 1 {
		t.Fatalf("%d sessions created", n)
	}
}

func TestLegacyTokenNotInRedisOrBadlySignedIsRefusedUntouched(t *testing.T) {
	e := legacyEnv(t)
	stored := seedRefreshToken(t, e, 5, 24)
	// Signed right but never stored (or already used).
	unstored := testkeys.Sign(t, jwt.SigningMethodRS256, testKeys(t).rsaKey, "", jwt.MapClaims{"userId": 6, "exp": time.Now().Add(time.Hour).Unix()})
	// Stored under its md5 but signed by someone else.
	forged := testkeys.Sign(t, jwt.SigningMethodES256, testKeys(t).otherEC, "", jwt.MapClaims{"userId": 5, "exp": time.Now().Add(time.Hour).Unix()})
	e.rd.Client().Set(t.Context(), legacyKey(seedPrefix, forged), forged, time.Hour)
	expired := testkeys.Sign(t, jwt.SigningMethodRS256, testKeys(t).rsaKey, "", jwt.MapClaims{"userId": 5, "exp": time.Now().Add(-time.Hour).Unix()})
	e.rd.Client().Set(t.Context(), legacyKey(seedPrefix, expired), expired, time.Hour)
	before := e.rd.Dump()
	for name, tok := range map[string]string{"unstored": unstored, "forged": forged, "expired": expired} {
		t.Run(name, func(t *testing.T) {
			expectStatus(t, refreshWith(t, e.base, tok), http.StatusBadRequest, "invalid_grant")
		})
	}
	sameDump(t, before, e.rd.Dump())
	expectStatus(t, refreshWith(t, e.base, stored), http.StatusOK, "")
}
