package tollgate_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/testcaddy"
)

// adaptExample adapts caddyfile.example with env added to this process's
// environment, returning the JSON and what adapt wrote to stderr.
func adaptExample(t *testing.T, env ...string) (adapted []byte, stderr string) {
	t.Helper()
	cmd := exec.Command(testcaddy.Binary(t), "adapt", "--config", "caddyfile.example", "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), env...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("adapt caddyfile.example: %v\n%s", err, &errOut)
	}
	return out, errOut.String()
}

// caddyfile.example is what `caddy fmt` writes: Caddy warns "Caddyfile
// input is not formatted" at every adapt, run and reload of a file that
// is not, and ops copy this one.
func TestCaddyfileExampleIsWhatCaddyFmtWrites(t *testing.T) {
	example, err := os.ReadFile("caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	formatted, err := exec.Command(testcaddy.Binary(t), "fmt", "caddyfile.example").Output()
	if err != nil {
		t.Fatalf("tollgate fmt: %v", err)
	}
	if !bytes.Equal(formatted, example) {
		t.Errorf("caddyfile.example is not as `tollgate fmt` writes it (tollgate fmt --overwrite caddyfile.example)")
	}
	if _, stderr := adaptExample(t); strings.Contains(stderr, "not formatted") {
		t.Errorf("adapt warns: %s", stderr)
	}
}

var (
	// exampleVarLine is a variable in the list at the top: "#     NAME   what it is".
	exampleVarLine = regexp.MustCompile(`^#\s+([A-Z][A-Z0-9_]*)\s{2,}\S`)
	adaptVar       = regexp.MustCompile(`\{\$([A-Za-z0-9_]+)`)
	envVar         = regexp.MustCompile(`\{env\.([A-Za-z0-9_]+)\}`)
)

// exampleVariables reads caddyfile.example's list of variables: the names
// under "{$NAME}" (substituted when adapted) and under "{env.NAME}" (read
// when the config loads), with their descriptions; and the names its
// configuration lines read, of each kind.
func exampleVariables(t *testing.T) (listed map[string]map[string]string, read map[string][]string) {
	t.Helper()
	example, err := os.ReadFile("caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	listed = map[string]map[string]string{"adapt": {}, "env": {}}
	read = map[string][]string{}
	section, inHeader := "", true
	for _, line := range strings.Split(string(example), "\n") {
		trimmed := strings.TrimSpace(line)
		if inHeader && !strings.HasPrefix(trimmed, "#") && trimmed != "" {
			inHeader = false
		}
		if inHeader {
			switch {
			case strings.HasPrefix(trimmed, "#   {$NAME}"):
				section = "adapt"
			case strings.HasPrefix(trimmed, "#   {env.NAME}"):
				section = "env"
			}
			if m := exampleVarLine.FindStringSubmatch(line); m != nil && section != "" {
				listed[section][m[1]] = line
			}
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		for _, m := range adaptVar.FindAllStringSubmatch(line, -1) {
			read["adapt"] = append(read["adapt"], m[1])
		}
		for _, m := range envVar.FindAllStringSubmatch(line, -1) {
			read["env"] = append(read["env"], m[1])
		}
	}
	return listed, read
}

// Every variable caddyfile.example reads is listed at its top, under the
// kind it is read as, with what it is; and the list names nothing the file
// does not read.
func TestCaddyfileExampleListsEveryVariableItReads(t *testing.T) {
	listed, read := exampleVariables(t)
	if len(read["adapt"]) == 0 || len(read["env"]) == 0 {
		t.Fatalf("found no variables in caddyfile.example: %v", read)
	}
	for kind, names := range read {
		for _, name := range names {
			if _, ok := listed[kind][name]; !ok {
				t.Errorf("caddyfile.example reads %s (%s) but its list at the top does not name it there", name, kind)
			}
		}
	}
	for kind, names := range listed {
		for name := range names {
			if !slices.Contains(read[kind], name) {
				t.Errorf("the list at the top names %s (%s), which caddyfile.example does not read", name, kind)
			}
		}
	}
}

// A secret given as {$VAR} is written into the JSON config (autosave.json,
// GET /config/). Every secret caddyfile.example reads is an {env.*}
// placeholder: with the secrets set while adapting, none of them is in the
// JSON, and the placeholders are; no Redis URL carries a password (each
// gives it with the password block).
func TestCaddyfileExampleKeepsEverySecretOutOfTheJSONConfig(t *testing.T) {
	listed, _ := exampleVariables(t)
	var env, secrets []string
	for name, line := range listed["env"] {
		if strings.Contains(line, "(secret") {
			value := "secret-value-of-" + name + "-0123456789abcdef"
			env, secrets = append(env, name+"="+value), append(secrets, name)
		}
	}
	if len(secrets) < 3 {
		t.Fatalf("the list names %d secrets (want the Redis password, the APIv3 key and the webhook secret): %v", len(secrets), secrets)
	}
	adapted, _ := adaptExample(t, env...)
	for _, name := range secrets {
		if bytes.Contains(adapted, []byte("secret-value-of-"+name)) {
			t.Errorf("the JSON config holds the value of %s", name)
		}
		if !bytes.Contains(adapted, []byte("{env."+name+"}")) {
			t.Errorf("the JSON config does not read %s as {env.%s}", name, name)
		}
	}
	for _, h := range moduleHandlers(t, adapted) {
		for _, field := range []string{"redis", "revocation"} {
			if url, ok := h[field].(string); ok && strings.Contains(url, "@") {
				t.Errorf("%s %s: a Redis URL with credentials", h["handler"], field)
			}
		}
		for url, password := range map[string]string{"redis": "redis_password", "revocation": "revocation_password"} {
			if _, ok := h[url]; ok && h[password] != "{env.REDIS_PASSWORD}" {
				t.Errorf("%s %s without the password block", h["handler"], url)
			}
		}
	}
}

// authjwt's allow lets a request through without a token: caddyfile.example
// allows jwt_refresh's endpoints one by one (a wildcard like /auth/* would
// open every backend path under /auth/), and only payproxy's notification
// endpoints by prefix, which payproxy verifies by the providers'
// signatures. The internal payments site reconciles the daily bills.
func TestCaddyfileExampleAllowsExactPathsAndReconciles(t *testing.T) {
	adapted, _ := adaptExample(t)
	var allows, reconciling int
	for _, h := range moduleHandlers(t, adapted) {
		switch h["handler"] {
		case "authjwt":
			list, _ := h["allow"].([]any)
			for _, a := range list {
				allows++
				if p := a.(string); strings.ContainsAny(p, "*?[") {
					t.Errorf("authjwt allow %s: a wildcard (only exact paths: the notifications too)", p)
				}
			}
		case "payproxy":
			ops, _ := json.Marshal(h["operations"])
			if _, ok := h["reconcile"]; ok {
				reconciling++
				if !strings.Contains(string(ops), `"refund"`) {
					t.Errorf("the route that reconciles is not the internal one: operations %s", ops)
				}
			}
		}
	}
	if allows == 0 || reconciling != 1 {
		t.Errorf("%d allow entries, %d payproxy routes with reconcile; want some, and one", allows, reconciling)
	}
}

// moduleHandlers are the handlers of tollgate's modules in an adapted
// config.
func moduleHandlers(t *testing.T, adapted []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, name := range []string{"authjwt", "jwt_refresh", "payproxy"} {
		out = append(out, testcaddy.Handlers(t, adapted, name)...)
	}
	return out
}
