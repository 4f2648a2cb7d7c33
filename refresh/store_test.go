package refresh

import (
	"net/http"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

func TestRedisDownAnswers503AndRecoversWithoutRestart(t *testing.T) {
	testKeys(t)
	e := &env{t: t, rd: testredis.Start(t, testredis.WithAOF("always")), backend: startBackend(t)}
	e.port = testcaddy.FreePort(t)
	e.base = "http://127.0.0.1:" + itoa(e.port)
	e.caddy = testcaddy.Start(t, "", siteBlock(e.port, e.rd.URL(), e.backend.hostPort(), ""))
	p := login(t, e.base, "flaky").pair

	e.rd.Stop()
	r := refreshWith(t, e.base, p.RefreshToken)
	expectStatus(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	expectStatus(t, post(t, e.base+"/login", "application/json", `{"user":"new"}`), http.StatusServiceUnavailable, "temporarily_unavailable")
	expectStatus(t, post(t, e.base+"/logout", "", "", "Refresh-Token", p.RefreshToken), http.StatusServiceUnavailable, "temporarily_unavailable")

	e.rd.Restart()
	// Nothing was lost: the same token still rotates, the client was
	// never told to log out.
	var ok response
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ok = refreshWith(t, e.base, p.RefreshToken); ok.status != http.StatusServiceUnavailable {
			break
		}
	}
	expectStatus(t, ok, http.StatusOK, "")
	if genOf(t, ok.pair.RefreshToken) != 2 {
		t.Fatalf("gen %d after recovery", genOf(t, ok.pair.RefreshToken))
	}
}
