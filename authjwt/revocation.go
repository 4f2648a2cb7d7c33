package authjwt

import (
	"fmt"
	"net/http"
	"time"

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
	if err := registerRevocationMetric(h.metricsRegistry); err != nil {
		_ = w.Release()
		return fmt.Errorf("registering metrics: %w", err)
	}
	h.revoked = w
	h.releaseRevoke = w.Release
	return nil
}

// checkRevocation refuses a token of a revoked session, and a token that
// names no session at all: revocation could never reach it (the seed's
// {userId, exp} refresh tokens verify with the same keys as access tokens).
// With unavailable reject, a token is refused while the revoked set is
// not current, since nobody can tell whether its session was revoked.
func (h *AuthJWT) checkRevocation(id *identity, now time.Time) *rejection {
	switch {
	case h.revoked == nil:
		return nil
	case id.sid == "":
		if h.RevocationAllowWithoutSid {
			return nil
		}
		return reject401(reasonNoSid, "token cannot be revoked")
	case h.RevocationUnavailable == "reject" && !h.revoked.Synced(now):
		return &rejection{reason: reasonRevocationUnknown, desc: "revocation status unknown; retry shortly",
			status: http.StatusServiceUnavailable}
	case h.revoked.Revoked(id.revocation):
		return reject401(reasonRevoked, "session revoked")
	}
	return nil
}
