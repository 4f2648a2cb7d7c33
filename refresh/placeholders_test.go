package refresh

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// provisionedBlock adapts a jwt_refresh block, checks that adapt kept
// placeholder as written, and provisions the handler as a config load
// does.
func provisionedBlock(t *testing.T, block, placeholder string) *Handler {
	t.Helper()
	raw, err := json.Marshal(adaptHandler(t, block))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), placeholder) {
		t.Fatalf("adapt did not keep %s as written: %s", placeholder, raw)
	}
	var h Handler
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	if err := h.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return &h
}

// Every jwt_refresh value that is a key path, a secret, or a Redis URL
// takes {env.*} and {file.*}: kept as written by adapt, resolved when the
// config is provisioned, and what it resolves to is what is used (that
// key signs or verifies, that Redis answers with that password).
func TestEverySecretPathAndURLTakesEnvAndFilePlaceholders(t *testing.T) {
	k := testKeys(t)
	const redisPassword = "redis-password-0c9d"
	rds := testredis.StartWithPassword(t, redisPassword)
	signs := func(t *testing.T, h *Handler) {
		if pub, ok := h.keys.signer.priv.Public().(*ecdsa.PublicKey); !ok || !pub.Equal(&k.es256Key.PublicKey) {
			t.Errorf("the signing key is not the file's")
		}
	}
	answers := func(t *testing.T, h *Handler) {
		if err := h.rdb.Ping(t.Context()).Err(); err != nil {
			t.Errorf("the Redis client: %v", err)
		}
	}
	cases := []struct {
		name, value, block string
		check              func(*testing.T, *Handler)
	}{
		{"redis URL", "redis://:" + redisPassword + "@" + rds.Addr() + "/0", "redis %s\nsigning_key " + k.es256, answers},
		{"redis password", redisPassword, "redis redis://" + rds.Addr() + "/0 {\npassword %s\n}\nsigning_key " + k.es256, answers},
		{"signing_key path", k.es256, "redis redis://:" + redisPassword + "@" + rds.Addr() + "/0\nsigning_key %s", signs},
		{"legacy_key path", k.rsaPub, "redis redis://:" + redisPassword + "@" + rds.Addr() + "/0\nsigning_key " + k.es256 +
			"\nlegacy_prefix OLD_\nlegacy_key %s", func(t *testing.T, h *Handler) {
			if pub, ok := h.legacy[0].pub.(*rsa.PublicKey); !ok || !pub.Equal(&k.rsaKey.PublicKey) {
				t.Errorf("the legacy key is not the file's")
			}
		}},
	}
	for _, c := range cases {
		testcaddy.EachPlaceholderForm(t, c.name, c.value, func(t *testing.T, ph string) {
			c.check(t, provisionedBlock(t, fmt.Sprintf(c.block, ph), ph))
		})
	}
}
