// Package demo_test checks make demo's preflight: a taken or repeated port
// stops the demo, with the port and how to choose another, before anything
// is installed, built or started.
package demo_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcaddy"
)

func TestMakeDemoStopsAtATakenPortBeforeBuildingAnything(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)

	out, tmp := makeDemo(t, "CUSTOMER_PORT="+port)
	for _, want := range []string{
		"✗ port " + port + " (CUSTOMER_PORT) is already in use on 127.0.0.1",
		"Choose other ports with the *_PORT variables, e.g.: make demo CUSTOMER_PORT=",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("make demo said:\n%s\nwant %q", out, want)
		}
	}
	assertNothingStarted(t, out, tmp)
}

func TestMakeDemoRefusesTwoServicesOnOnePort(t *testing.T) {
	free := strconv.Itoa(testcaddy.FreePort(t))
	out, tmp := makeDemo(t, "CUSTOMER_PORT="+free, "REDIS_PORT="+free)
	if !strings.Contains(out, "✗ REDIS_PORT="+free+": another demo port already uses "+free) {
		t.Errorf("make demo said:\n%s", out)
	}
	assertNothingStarted(t, out, tmp)
}

// makeDemo runs `make demo` with ports, every other demo port on a free
// one, and TMPDIR in a folder of its own; it must fail.
func makeDemo(t *testing.T, ports ...string) (out, tmp string) {
	t.Helper()
	tmp = t.TempDir()
	args := []string{"-s", "demo"}
	for _, name := range []string{"CUSTOMER_PORT", "COURIER_PORT", "INTERNAL_PORT", "PAYSIM_PORT", "BACKEND_PORT", "REDIS_PORT", "ADMIN_PORT"} {
		args = append(args, name+"="+strconv.Itoa(testcaddy.FreePort(t)))
	}
	args = append(args, ports...) // later assignments win
	// Bounded: a demo that ignored the taken port would build and run.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", args...)
	cmd.Dir = moduleRoot()
	// Without the variables of a make that runs these tests (make test).
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return name == "MAKEFLAGS" || name == "MFLAGS" || name == "MAKELEVEL"
	})
	cmd.Env = append(cmd.Env, "TMPDIR="+tmp, "DEMO_OUT="+tmp)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err == nil {
		t.Fatalf("make demo %v succeeded:\n%s", ports, buf.String())
	}
	return buf.String(), tmp
}

// assertNothingStarted: no build step ran and no demo folder was made.
func assertNothingStarted(t *testing.T, out, tmp string) {
	t.Helper()
	if strings.Contains(out, "Building") || strings.Contains(out, "Starting") {
		t.Errorf("make demo went on after the preflight:\n%s", out)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("make demo left %v in TMPDIR", entries)
	}
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..")
}
