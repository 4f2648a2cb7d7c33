// Package testredis starts real redis-server processes for tests: each on a
// free loopback port, in its own temporary directory, without persistence
// unless asked, stopped at test cleanup. Redis is never mocked in tollgate.
package testredis

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one running redis-server.
type Server struct {
	t    testing.TB
	Port int
	Dir  string
	args []string
	// portPicker chooses the port; cluster nodes need their bus port free too.
	portPicker func(testing.TB) int
	// sentinelConf, when set, starts the server in Sentinel mode.
	sentinelConf string
	// password, when set, is the one the server requires (StartWithPassword).
	password string
	// probes counts ConnectionsReceived's own connections.
	probes int64

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Option changes how the server is started.
type Option func(*Server)

// WithAOF turns on the append-only file with the given fsync policy
// ("always", "everysec" or "no"), so a restart keeps the data.
func WithAOF(fsync string) Option {
	return func(s *Server) {
		s.args = append(s.args, "--appendonly", "yes", "--appendfsync", fsync)
	}
}

// WithArgs passes extra redis-server arguments, e.g. "--cluster-enabled", "yes".
func WithArgs(args ...string) Option {
	return func(s *Server) { s.args = append(s.args, args...) }
}

// Start runs a redis-server for the test and stops it at cleanup. It fails
// the test (never skips) when redis-server is not installed.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is required for tollgate's tests (apt-get install -y redis-server; `make test` does it): %v", err)
	}
	s := &Server{t: t, Dir: t.TempDir(), portPicker: FreePort}
	for _, o := range opts {
		o(s)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.Port = s.portPicker(t)
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return nil
}

// SpecialPassword has every character that breaks a Redis URL's userinfo
// (/ # ? % @ and a space); each two-letter run of it is distinctive, so a
// test can tell when a message echoes any part of it.
const SpecialPassword = "QQ/WW#EE?RR%TT YY@UU"

// StartWithPassword is Start for a server that requires password. It is
// set once the server is up (the readiness probe speaks without AUTH);
// Client() then authenticates with it.
func StartWithPassword(t testing.TB, password string, opts ...Option) *Server {
	t.Helper()
	s := Start(t, opts...)
	if err := s.Client().ConfigSet(context.Background(), "requirepass", password).Err(); err != nil {
		t.Fatalf("setting the password: %v", err)
	}
	s.password = password
	return s
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL is the redis:// URL of database 0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Client returns a go-redis client for inspecting the server from a test;
// it is closed at cleanup.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password, MaxRetries: -1})
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// ConnectionsReceived is Redis's count of connections accepted so far
// (INFO stats total_connections_received): a test compares it before and
// after to prove something never dialed.
func (s *Server) ConnectionsReceived(t testing.TB) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password, MaxRetries: -1, PoolSize: 1})
	defer c.Close()
	info, err := c.InfoMap(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(info["Stats"]["total_connections_received"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	s.probes++ // this call's own connection, and the earlier calls'
	return n - s.probes
}

func (s *Server) start() error {
	args := append(s.baseArgs(), s.args...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := waitReady(s.Addr(), 10*time.Second); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		log, _ := os.ReadFile(filepath.Join(s.Dir, "redis.log"))
		return fmt.Errorf("%w; log: %s", err, lastLines(string(log), 5))
	}
	if s.password != "" { // a restart: the password was set at run time
		c := redis.NewClient(&redis.Options{Addr: s.Addr()})
		err := c.ConfigSet(context.Background(), "requirepass", s.password).Err()
		c.Close()
		if err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("setting the password: %w", err)
		}
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	return nil
}

// baseArgs are the options every test server runs with: loopback only, its
// own directory, no persistence (a Sentinel refuses the data options).
func (s *Server) baseArgs() []string {
	common := []string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--dir", s.Dir,
		"--protected-mode", "no", "--logfile", filepath.Join(s.Dir, "redis.log")}
	if s.sentinelConf != "" {
		return append([]string{s.sentinelConf, "--sentinel"}, common...)
	}
	return append(common, "--save", "", "--appendonly", "no", "--daemonize", "no")
}

// Stop kills the server (like a crash: no final save). Safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// Restart stops the server and starts it again on the same port and
// directory; with WithAOF the data survives.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for i := 0; i < 50; i++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restarting redis-server: %v", err)
}

// Dump returns every key with its type and value rendered as text, for
// asserting that a rejected request changed nothing in Redis.
func (s *Server) Dump() map[string]string {
	s.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password})
	defer c.Close()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		s.t.Fatalf("dump: %v", err)
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		typ, _ := c.Type(ctx, k).Result()
		var v any
		switch typ {
		case "string":
			v, _ = c.Get(ctx, k).Result()
		case "hash":
			v, _ = c.HGetAll(ctx, k).Result()
		case "set":
			v, _ = c.SMembers(ctx, k).Result()
		case "zset":
			v, _ = c.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "list":
			v, _ = c.LRange(ctx, k, 0, -1).Result()
		case "stream":
			v, _ = c.XRange(ctx, k, "-", "+").Result()
		}
		out[k] = fmt.Sprintf("%s:%v", typ, v)
	}
	return out
}

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

func waitReady(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = conn.SetDeadline(time.Now().Add(time.Second))
			_, _ = conn.Write([]byte("PING\r\n"))
			line, rerr := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if rerr == nil && strings.HasPrefix(line, "+PONG") {
				return nil
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
	return fmt.Errorf("redis at %s not ready after %s", addr, timeout)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
