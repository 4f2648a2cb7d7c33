package tollgate_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/testcaddy"
)

// TestTheExamplesRedisPasswordNeverEntersTheConfig: caddyfile.example
// takes its Redis URL as {$REDIS_URL}, and a Redis URL carries the
// password (README's own form, redis://:<password>@host:6379/0, and the
// one the project's log test runs the example with). {$VAR} is
// substituted when the file is adapted, so the password becomes part of
// the JSON config: autosave.json and GET /config/ on the admin endpoint
// (README "Secrets and variables": secrets as {env.NAME} or {file.PATH}).
// The example ops copy must keep it a placeholder.
func TestTheExamplesRedisPasswordNeverEntersTheConfig(t *testing.T) {
	const password = "review-redis-password-5e1f0c"
	env := exampleEnv(t)
	for i, kv := range env {
		if strings.HasPrefix(kv, "REDIS_URL=") {
			env[i] = "REDIS_URL=redis://:" + password + "@127.0.0.1:1/0"
		}
	}
	cmd := exec.Command(testcaddy.Binary(t), "adapt", "--config", "caddyfile.example", "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), env...)
	adapted, err := cmd.Output()
	if err != nil {
		t.Fatalf("adapt caddyfile.example: %v", err)
	}
	if n := strings.Count(string(adapted), password); n > 0 {
		t.Errorf("the Redis password is in the adapted config %d times (what Caddy autosaves and GET /config/ serves)", n)
	}
}
