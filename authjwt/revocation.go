package authjwt

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/tollgate/tollgate/internal/redisclient"
	"github.com/tollgate/tollgate/internal/revocation"
)

// provisionRevocation acquires the process-wide watcher of revoked
// sessions for the configured Redis. It does not wait for Redis: until the
// watcher has loaded, nothing is considered revoked.
func (h *AuthJWT) provisionRevocation() error {
	if h.Revocation == "" {
		return nil
	}
	url := caddy.NewReplacer().ReplaceKnown(h.Revocation, "")
	if err := redisclient.Validate(url); err != nil {
		return fmt.Errorf("revocation: %w", err)
	}
	w, err := revocation.Acquire(url, h.logger)
	if err != nil {
		return fmt.Errorf("revocation: %w", err)
	}
	h.revoked = w
	h.releaseRevoke = w.Release
	return nil
}
