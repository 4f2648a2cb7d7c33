package authjwt

import (
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/tollgate/tollgate/internal/redisclient"
	"github.com/tollgate/tollgate/internal/revocation"
)

// provisionRevocation acquires the process-wide watcher of revoked
// sessions for the configured Redis. It waits for Redis at most
// redisclient.CheckTimeout, to refuse credentials Redis rejects (a wrong
// password, an empty one after a reload): those would leave every revoked
// session accepted. A Redis that does not answer only gets a warning:
// until the watcher has loaded, nothing is considered revoked (see
// RevocationUnavailable).
func (h *AuthJWT) provisionRevocation() error {
	if h.Revocation == "" {
		return nil
	}
	cfg, err := redisclient.Resolve("revocation", h.Revocation, h.RevocationPassword)
	if err != nil {
		return err
	}
	if err := checkRevocationRedis(cfg, h.logger); err != nil {
		return fmt.Errorf("revocation: %w", err)
	}
	w, err := revocation.Acquire(cfg, h.logger)
	if err != nil {
		return fmt.Errorf("revocation %s: %w", cfg, err)
	}
	if err := registerRevocationMetric(h.metricsRegistry); err != nil {
		_ = w.Release()
		return fmt.Errorf("registering metrics: %w", err)
	}
	h.revoked = w
	h.releaseRevoke = w.Release
	return nil
}

// checkRevocationRedis asks Redis once whether it takes the credentials.
func checkRevocationRedis(cfg redisclient.Config, logger *zap.Logger) error {
	rdb, err := cfg.Acquire()
	if err != nil {
		return err
	}
	defer cfg.Release()
	return cfg.CheckAtLoad(rdb, logger)
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
	case h.RevocationUnavailable == unavailableReject && !h.revoked.Synced(now):
		return &rejection{reason: reasonRevocationUnknown, desc: "revocation status unknown; retry shortly",
			status: http.StatusServiceUnavailable}
	case h.revoked.Revoked(id.revocation):
		return reject401(reasonRevoked, "session revoked")
	}
	return nil
}
