package redisclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testkeys"
)

func TestLogLimiterLetsOneLineOfAKindThroughPerInterval(t *testing.T) {
	l := LogLimiter{Every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		kind       string
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{"dial %v", 0, true, 0},
		{"dial %v", time.Second, false, 0},
		{"other %v", time.Second, true, 0}, // another kind is not held back
		{"dial %v", 5 * time.Second, false, 0},
		{"dial %v", 10 * time.Second, true, 2},
		{"dial %v", 11 * time.Second, false, 0},
		{"dial %v", 25 * time.Second, true, 1},
	}
	for i, s := range steps {
		suppressed, ok := l.Allow(s.kind, t0.Add(s.at))
		if ok != s.ok || suppressed != s.suppressed {
			t.Errorf("step %d (%s at %s): ok %v suppressed %d, want %v %d", i, s.kind, s.at, ok, suppressed, s.ok, s.suppressed)
		}
	}
}

// While Redis is down go-redis logs each failed dial of its pool (every
// login here: 503 temporarily_unavailable). Those lines reach Caddy's log
// as JSON lines of the logger tollgate.redis, at most one of a kind per
// 10 s; never as go-redis's own plain text ("redis: 2026/12/01 …
// pool.go:770: … failed to dial") in the middle of the JSON stream.
func TestGoRedisLinesNeverReachStderrAsPlainText(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dir := t.TempDir()
	priv, err := testkeys.WritePrivate(dir, "es.pem", key)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := testkeys.WritePublic(dir, "es.pub.pem", key.Public())
	down := fmt.Sprintf("redis://127.0.0.1:%d/0", testcaddy.FreePort(t)) // nothing listens
	port := testcaddy.FreePort(t)
	p := testcaddy.StartProcess(t, "", fmt.Sprintf(`http://127.0.0.1:%d {
	authjwt {
		key %s
		allow /login
		revocation %s
	}
	route {
		jwt_refresh {
			redis %s
			signing_key %s
			login_path /login
		}
		header X-Auth-Subject u1
		respond "{}" 200
	}
}
`, port, pub, down, down, priv))
	login := fmt.Sprintf("http://127.0.0.1:%d/login", port)
	deadline := time.Now().Add(60 * time.Second)
	logins := 0
	for ; logins < 5 || !strings.Contains(p.Log(), "failed to dial"); logins++ {
		if time.Now().After(deadline) {
			t.Fatalf("go-redis never reported the failed dials:\n%s", p.Log())
		}
		res, err := http.Post(login, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("login with Redis down: %d, want 503", res.StatusCode)
		}
	}
	routed := 0
	for _, line := range strings.Split(strings.TrimSpace(p.Log()), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Errorf("a line that is not JSON: %s", line)
			continue
		}
		if entry["logger"] == "tollgate.redis" {
			routed++
			if entry["level"] != "warn" || !strings.Contains(fmt.Sprint(entry["detail"]), "failed to dial") {
				t.Errorf("go-redis's line as logged: %s", line)
			}
		}
	}
	if routed == 0 || routed >= logins {
		t.Errorf("%d lines of the tollgate.redis logger for %d failed logins, want one a kind per 10 s", routed, logins)
	}
}
