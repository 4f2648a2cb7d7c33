package commands_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"

	_ "github.com/tollgate/tollgate"
)

// The binary under test is built the documented way, `make build`, once
// per test run.
var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tollgate-commands-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tollgate")
		cmd := exec.Command("make", "-s", "build", "BIN="+binPath, "PAYSIM_BIN="+filepath.Join(dir, "paysim"))
		cmd.Dir = moduleRoot()
		cmd.Env = withoutMake(os.Environ())
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("make build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// withoutMake drops the variables of a make that runs these tests (make
// test), so the inner make starts clean, as a person's would.
func withoutMake(env []string) []string {
	return slices.DeleteFunc(env, func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return name == "MAKEFLAGS" || name == "MFLAGS" || name == "MAKELEVEL"
	})
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// result is what one run of the binary did.
type result struct {
	stdout, stderr string
	code           int
}

func tollgate(t *testing.T, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running tollgate %v: %v", args, err)
	}
	return r
}

// ok runs the binary and fails the test unless it exits 0.
func ok(t *testing.T, args ...string) result {
	t.Helper()
	r := tollgate(t, args...)
	if r.code != 0 {
		t.Fatalf("tollgate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

// refused runs the binary and fails the test unless it exits 1 with want
// in its error, which Caddy's command line logs as a JSON line.
func refused(t *testing.T, want string, args ...string) result {
	t.Helper()
	r := tollgate(t, args...)
	var logged struct {
		Level, Msg string
	}
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	_ = json.Unmarshal([]byte(lines[len(lines)-1]), &logged)
	if r.code != 1 || logged.Level != "error" || !strings.Contains(logged.Msg, want) {
		t.Fatalf("tollgate %s: exit %d, want 1 with %q\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

func TestHelpListsTheOpsCommands(t *testing.T) {
	help := ok(t, "help").stdout
	for _, want := range []string{"tollgate [command]", "keygen", "sessions", "payproxy", "version", "reload"} {
		if !strings.Contains(help, want) {
			t.Errorf("tollgate help lacks %q:\n%s", want, help)
		}
	}
	for cmd, sub := range map[string]string{"sessions": "revoke", "payproxy": "dead-letters"} {
		if out := ok(t, "help", cmd).stdout; !strings.Contains(out, sub) {
			t.Errorf("tollgate help %s lacks %q:\n%s", cmd, sub, out)
		}
	}
}

// TestVersionNamesTollgateThenCaddy: a `make build` binary says which
// tollgate it is (the commit's tag or pseudo-version, not "(devel)") and
// which Caddy (go.mod's).
func TestVersionNamesTollgateThenCaddy(t *testing.T) {
	out := strings.TrimSpace(ok(t, "version").stdout)
	m := regexp.MustCompile(`^tollgate (\S+); Caddy (v\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("tollgate version: %q", out)
	}
	if !strings.HasPrefix(m[1], "v") || strings.Contains(m[1], "devel") {
		t.Errorf("tollgate's version is %q", m[1])
	}
	caddyPin := regexp.MustCompile(`github.com/caddyserver/caddy/v2 (v\S+)`).FindStringSubmatch(readFile(t, filepath.Join(moduleRoot(), "go.mod")))
	if caddyPin == nil || m[2] != caddyPin[1] {
		t.Errorf("Caddy's version is %q, go.mod pins %v", m[2], caddyPin)
	}
	if v := strings.TrimSpace(ok(t, "--version").stdout); v != out {
		t.Errorf("--version says %q, version says %q", v, out)
	}
}

// keyWorld is jwt_refresh and authjwt on one site, with the lines that
// `tollgate keygen` printed, in front of a backend whose login answers
// X-Auth-Subject.
type keyWorld struct {
	base  string
	redis *testredis.Server
	caddy *testcaddy.Instance
}

func (w *keyWorld) admin() string { return "127.0.0.1:" + strconv.Itoa(w.caddy.AdminPort) }

func startKeyWorld(t *testing.T, keygenOut string) *keyWorld {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/login" {
			fmt.Fprintf(rw, "upstream %s", r.URL.Path)
			return
		}
		var req struct{ User string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		rw.Header().Set("X-Auth-Subject", req.User)
		rw.Header().Set("Content-Type", "application/json")
		io.WriteString(rw, `{}`)
	}))
	t.Cleanup(backend.Close)
	w := &keyWorld{redis: testredis.Start(t)}
	port := testcaddy.FreePort(t)
	w.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	w.caddy = testcaddy.Start(t, "", fmt.Sprintf(`%s {
	jwt_refresh {
		redis %s
		login_path /login
	%s
	}
	authjwt {
		allow /login
	%s
	}
	reverse_proxy %s
}
`, w.base, w.redis.URL(), printedLine(t, keygenOut, "signing_key"), printedLine(t, keygenOut, "key"),
		strings.TrimPrefix(backend.URL, "http://")))
	return w
}

// printedLine is the Caddyfile line of keygen's output whose first word
// is directive.
func printedLine(t *testing.T, out, directive string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == directive {
			return l
		}
	}
	t.Fatalf("keygen printed no %s line:\n%s", directive, out)
	return ""
}

// tokens are the answer of a login or a refresh.
type tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	Error        string `json:"error"`
	status       int
}

func (w *keyWorld) post(t *testing.T, path, body string, header ...string) tokens {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, w.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tk tokens
	_ = json.NewDecoder(resp.Body).Decode(&tk)
	tk.status = resp.StatusCode
	return tk
}

func (w *keyWorld) login(t *testing.T, user string) tokens {
	t.Helper()
	tk := w.post(t, "/login", fmt.Sprintf(`{"user":%q}`, user))
	if tk.status != http.StatusOK || tk.AccessToken == "" {
		t.Fatalf("login %s: %d %+v", user, tk.status, tk)
	}
	return tk
}

func (w *keyWorld) refresh(t *testing.T, rt string) tokens {
	t.Helper()
	return w.post(t, "/auth/refresh", "", "Refresh-Token", rt)
}

// jwtPart decodes the header (0) or the claims (1) of a JWT.
func jwtPart(t *testing.T, token string, part int) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[part])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
