package tollgate_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/testcaddy"
)

// TestTheExamplesRedisPasswordNeverEntersTheConfig: caddyfile.example
// took its Redis URL, password included (redis://:<password>@host/0), as
// {$REDIS_URL}, which is substituted when the file is adapted: the
// password became part of the JSON config, autosave.json and GET /config/
// (hostile review: "the Redis password is in the adapted config 6
// times"). Now the URL carries none and the password is the block's
// {env.REDIS_PASSWORD}, read when the config loads: set as the example's
// list says, the password never appears in the adapted config.
func TestTheExamplesRedisPasswordNeverEntersTheConfig(t *testing.T) {
	const password = "review-redis-password-5e1f0c"
	env := exampleEnv(t)
	for i, kv := range env {
		if strings.HasPrefix(kv, "REDIS_URL=") {
			env[i] = "REDIS_URL=redis://127.0.0.1:1/0"
		}
	}
	env = append(env, "REDIS_PASSWORD="+password)
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
