package payproxy

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestLockPlaceholderTakesOnlyTheDocumentedValues: {http.payproxy.lock}
// is held, none, timeout or lost (README, PayProxy's doc), each from its
// typed state, so that a misspelt state cannot compile.
func TestLockPlaceholderTakesOnlyTheDocumentedValues(t *testing.T) {
	for state, want := range map[lockState]string{lockNone: "none", lockHeld: "held", lockTimeout: "timeout", lockLost: "lost"} {
		repl := caddy.NewReplacer()
		r := httptest.NewRequest("POST", "/pay/trades", nil)
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
		setLockPlaceholder(r, state)
		if got, _ := repl.GetString("http.payproxy.lock"); got != want {
			t.Errorf("state %d: placeholder %q, want %q", state, got, want)
		}
	}
}
