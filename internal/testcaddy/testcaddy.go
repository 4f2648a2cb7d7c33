// Package testcaddy runs real Caddy instances from Caddyfile text for tests:
// in this process (Start) or as separate tollgate processes (StartProcess),
// each with its own admin endpoint on a free loopback port, so test binaries
// of different packages running at the same time never collide on :2019.
package testcaddy

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	// The Caddyfile adapter and the standard modules a test Caddyfile uses.
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// FreePort asks the kernel for a free loopback TCP port.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Global returns the global options block every test instance uses: an
// admin endpoint on adminPort, no automatic HTTPS, no saved config, a short
// grace period, plus any extra global options.
func Global(adminPort int, extra string) string {
	return fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tauto_https off\n\tpersist_config off\n\tgrace_period 2s\n%s\n}\n", adminPort, extra)
}

// Adapt turns a Caddyfile into Caddy's JSON config, failing on any error.
func Adapt(caddyfile string) ([]byte, []caddyconfig.Warning, error) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	return adapter.Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
}

// Instance is Caddy running inside the test process. Caddy's running config
// is process-global, so only one Instance can run at a time per process.
type Instance struct {
	t         testing.TB
	AdminPort int
	extra     string
}

var inProcess sync.Mutex

// Start runs sites (one or more Caddyfile site blocks; extraGlobal is put
// into the global options block) inside this process until the test ends.
func Start(t testing.TB, extraGlobal, sites string) *Instance {
	t.Helper()
	if !inProcess.TryLock() {
		t.Fatal("testcaddy: an in-process Caddy is already running; use StartProcess for a second instance")
	}
	inst := &Instance{t: t, AdminPort: FreePort(t), extra: extraGlobal}
	if err := inst.load(sites); err != nil {
		inProcess.Unlock()
		t.Fatalf("starting caddy: %v", err)
	}
	t.Cleanup(func() {
		_ = caddy.Stop()
		inProcess.Unlock()
	})
	return inst
}

// Reload replaces the running config with new sites, as `caddy reload` does.
func (i *Instance) Reload(sites string) {
	i.t.Helper()
	if err := i.load(sites); err != nil {
		i.t.Fatalf("reloading caddy: %v", err)
	}
}

// AdminURL is the base URL of this instance's admin API.
func (i *Instance) AdminURL() string { return "http://127.0.0.1:" + strconv.Itoa(i.AdminPort) }

func (i *Instance) load(sites string) error {
	cfg, _, err := Adapt(Global(i.AdminPort, i.extra) + sites)
	if err != nil {
		return err
	}
	return caddy.Load(cfg, true)
}

// Process is a tollgate binary running as its own process.
type Process struct {
	t         testing.TB
	AdminPort int
	dir       string
	extra     string
	cmd       *exec.Cmd
	log       *bytes.Buffer
	mu        sync.Mutex
}

// StartProcess runs sites in a separate tollgate process (built once per
// test binary from ./cmd/tollgate) and stops it at cleanup. Use it for
// several instances sharing one Redis, for kill -9 and for reloads from
// the command line.
func StartProcess(t testing.TB, extraGlobal, sites string, env ...string) *Process {
	t.Helper()
	p := &Process{t: t, AdminPort: FreePort(t), dir: t.TempDir(), extra: extraGlobal, log: &bytes.Buffer{}}
	cfgPath := p.writeConfig(sites)
	p.cmd = exec.Command(Binary(t), "run", "--config", cfgPath, "--adapter", "caddyfile")
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = &lockedWriter{mu: &p.mu, w: p.log}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting tollgate: %v", err)
	}
	t.Cleanup(p.Stop)
	if err := waitHTTP(p.AdminURL()+"/config/", 60*time.Second); err != nil {
		p.Stop()
		t.Fatalf("tollgate did not start: %v\n%s", err, p.Log())
	}
	return p
}

// AdminURL is the base URL of this process's admin API.
func (p *Process) AdminURL() string { return "http://127.0.0.1:" + strconv.Itoa(p.AdminPort) }

// Log returns what the process printed so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// Reload applies new sites with `tollgate reload`, a graceful config
// change; flags are passed on (--force reloads an unchanged config).
func (p *Process) Reload(sites string, flags ...string) {
	p.t.Helper()
	cfgPath := p.writeConfig(sites)
	args := append([]string{"reload", "--config", cfgPath, "--adapter", "caddyfile",
		"--address", "127.0.0.1:" + strconv.Itoa(p.AdminPort)}, flags...)
	out, err := exec.Command(Binary(p.t), args...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tollgate reload: %v\n%s", err, out)
	}
}

// Stop ends the process gracefully (SIGINT), then kills it after 10s.
func (p *Process) Stop() { p.signal(syscall.SIGINT, 10*time.Second) }

// Kill ends the process at once (SIGKILL), like a crash.
func (p *Process) Kill() { p.signal(syscall.SIGKILL, 0) }

func (p *Process) signal(sig syscall.Signal, grace time.Duration) {
	if p.cmd == nil || p.cmd.Process == nil || p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func (p *Process) writeConfig(sites string) string {
	path := filepath.Join(p.dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(Global(p.AdminPort, p.extra)+sites), 0o600); err != nil {
		p.t.Fatalf("writing Caddyfile: %v", err)
	}
	return path
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/tollgate once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tollgate-testbin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tollgate")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/tollgate/tollgate/cmd/tollgate")
		cmd.Dir = moduleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/tollgate: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// moduleRoot is the repository root, found from this source file's path.
func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func waitHTTP(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	var lastErr error
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	return lastErr
}

// WaitListening waits until something accepts TCP connections on addr.
func WaitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s after %s", addr, timeout)
}

// Settle waits until base answers several requests in a row, each on a
// new connection, without a connection-level failure. After a reload the
// old server may still accept a connection and then close it (Caddy's
// documented behaviour for non-retrying clients); tests that must not
// retry a non-idempotent request wait for the switch to finish first.
func Settle(t testing.TB, base string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(10 * time.Second)
	for ok := 0; ok < 5; {
		resp, err := client.Get(base + "/")
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatalf("%s still failing 10s after a reload: %v", base, err)
			}
			ok = 0
			time.Sleep(20 * time.Millisecond)
			continue
		}
		resp.Body.Close()
		ok++
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// EachPlaceholderForm runs test as subtests name/env and name/file: value
// given as an {env.*} placeholder (the variable set for the subtest), then
// as a {file.*} one (a file holding value and a final newline).
func EachPlaceholderForm(t *testing.T, name, value string, test func(t *testing.T, placeholder string)) {
	t.Run(name+"/env", func(t *testing.T) {
		t.Setenv("TOLLGATE_TEST_VALUE", value)
		test(t, "{env.TOLLGATE_TEST_VALUE}")
	})
	t.Run(name+"/file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "value")
		if err := os.WriteFile(path, []byte(value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		test(t, "{file."+path+"}")
	})
}
