package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smartwalle/alipay/v3"
	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/wechatpay-apiv3/wechatpay-go/utils"
)

// prepareArgs runs the command's startup with args; the caller closes both.
func prepareArgs(t *testing.T, args ...string) (*paysim.Sim, net.Listener, string) {
	t.Helper()
	o, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	sim, ln, base, err := prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	return sim, ln, base
}

func readEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			t.Fatalf("line %q is not NAME=value", sc.Text())
		}
		env[name] = value
	}
	return env
}

// TestFirstStartWritesKeysAndEnv runs the command's startup into a temporary
// folder: paysim.env names every variable, the files it points at exist and
// load with the SDKs' own loaders, and a second start reuses the same keys.
func TestFirstStartWritesKeysAndEnv(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "paysim")
	sim, ln, base := prepareArgs(t, "-listen", "127.0.0.1:0", "-keys", dir, "-notify-retry", "10ms,20ms", "-wechat-refund-delay", "50ms")
	ln.Close()
	sim.Close()

	env := readEnv(t, filepath.Join(dir, "paysim.env"))
	names := []string{"PAYSIM_URL", "ALIPAY_APP_ID", "ALIPAY_PRIVATE_KEY_FILE", "ALIPAY_PUBLIC_KEY_FILE", "ALIPAY_GATEWAY",
		"WECHAT_MCH_ID", "WECHAT_APP_ID", "WECHAT_SERIAL_NO", "WECHAT_PRIVATE_KEY_FILE", "WECHAT_APIV3_KEY",
		"WECHAT_PLATFORM_PUBLIC_KEY_FILE", "WECHAT_PLATFORM_PUBLIC_KEY_ID", "WECHAT_BASE_URL"}
	for _, n := range names {
		if env[n] == "" {
			t.Errorf("%s missing from paysim.env", n)
		}
	}
	if len(env) != len(names) {
		t.Errorf("paysim.env has %d names, want %d", len(env), len(names))
	}
	if env["PAYSIM_URL"] != base || env["ALIPAY_GATEWAY"] != base+"/gateway.do" || env["WECHAT_BASE_URL"] != base {
		t.Errorf("urls: %v", env)
	}
	if len(env["WECHAT_APIV3_KEY"]) != 32 || !strings.HasPrefix(env["WECHAT_PLATFORM_PUBLIC_KEY_ID"], "PUB_KEY_ID_") {
		t.Errorf("secrets: %v", env)
	}
	for _, n := range []string{"ALIPAY_PRIVATE_KEY_FILE", "ALIPAY_PUBLIC_KEY_FILE", "WECHAT_PRIVATE_KEY_FILE", "WECHAT_PLATFORM_PUBLIC_KEY_FILE"} {
		if !filepath.IsAbs(env[n]) {
			t.Errorf("%s=%s is not absolute", n, env[n])
		}
		if _, err := os.Stat(env[n]); err != nil {
			t.Errorf("%s: %v", n, err)
		}
	}
	appPriv, _ := os.ReadFile(env["ALIPAY_PRIVATE_KEY_FILE"])
	alipayPub, _ := os.ReadFile(env["ALIPAY_PUBLIC_KEY_FILE"])
	c, err := alipay.New(env["ALIPAY_APP_ID"], string(appPriv), false, alipay.WithSandboxGateway(env["ALIPAY_GATEWAY"]))
	if err != nil {
		t.Fatalf("alipay.New refuses ALIPAY_PRIVATE_KEY_FILE: %v", err)
	}
	if err := c.LoadAliPayPublicKey(string(alipayPub)); err != nil {
		t.Fatalf("ALIPAY_PUBLIC_KEY_FILE: %v", err)
	}
	if _, err := utils.LoadPrivateKeyWithPath(env["WECHAT_PRIVATE_KEY_FILE"]); err != nil {
		t.Fatalf("WECHAT_PRIVATE_KEY_FILE: %v", err)
	}
	if _, err := utils.LoadPublicKeyWithPath(env["WECHAT_PLATFORM_PUBLIC_KEY_FILE"]); err != nil {
		t.Fatalf("WECHAT_PLATFORM_PUBLIC_KEY_FILE: %v", err)
	}

	// A second start reuses every key and id.
	again, err := paysim.LoadOrCreateKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.AlipayAppID != env["ALIPAY_APP_ID"] || again.WechatAPIv3Key != env["WECHAT_APIV3_KEY"] || again.WechatSerialNo != env["WECHAT_SERIAL_NO"] {
		t.Fatal("keys were regenerated instead of reused")
	}
}

// TestServes checks that the started server answers its control API.
func TestServes(t *testing.T) {
	sim, ln, base := prepareArgs(t, "-listen", "127.0.0.1:0", "-keys", t.TempDir(), "-public-url", "http://paysim.test:8090/")
	defer sim.Close()
	if base != "http://paysim.test:8090" {
		t.Fatalf("base %s", base)
	}
	srv := &http.Server{Handler: sim.Handler()}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + ln.Addr().String() + "/_sim/calls")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"a malformed retry delay", []string{"-notify-retry", "1s,soon"}},
		{"a negative retry delay", []string{"-notify-retry", "-1s"}},
		{"a zero divisor", []string{"-notify-retry", "/0"}},
		{"a divisor that is not a number", []string{"-notify-retry", "/fast"}},
		{"a negative refund gap", []string{"-alipay-refund-gap", "-3s"}},
		{"an unknown flag", []string{"-nope"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseFlags(tc.args, io.Discard); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestNotifyRetryRunsTheProvidersOwnSchedulesCompressed: -notify-retry /N
// (the default /1000) divides Alipay's and WeChat's own schedules by N,
// real runs them in real time, a list replaces both.
func TestNotifyRetryRunsTheProvidersOwnSchedulesCompressed(t *testing.T) {
	for _, tc := range []struct {
		args        []string
		wantAlipay0 time.Duration
		wantWechat0 time.Duration
		wantTries   [2]int
	}{
		{args: nil, wantAlipay0: 240 * time.Millisecond, wantWechat0: 15 * time.Millisecond, wantTries: [2]int{8, 16}},
		{args: []string{"-notify-retry", "/60"}, wantAlipay0: 4 * time.Second, wantWechat0: 250 * time.Millisecond, wantTries: [2]int{8, 16}},
		{args: []string{"-notify-retry", "real"}, wantAlipay0: 4 * time.Minute, wantWechat0: 15 * time.Second, wantTries: [2]int{8, 16}},
		{args: []string{"-notify-retry", "10ms,20ms"}, wantAlipay0: 10 * time.Millisecond, wantWechat0: 10 * time.Millisecond, wantTries: [2]int{3, 3}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			sim, ln, _ := prepareArgs(t, append([]string{"-listen", "127.0.0.1:0", "-keys", t.TempDir()}, tc.args...)...)
			ln.Close()
			defer sim.Close()
			a, w := sim.NotifySchedule(paysim.ProviderAlipay), sim.NotifySchedule(paysim.ProviderWechat)
			if a[0] != tc.wantAlipay0 || w[0] != tc.wantWechat0 || len(a)+1 != tc.wantTries[0] || len(w)+1 != tc.wantTries[1] {
				t.Fatalf("alipay %v, wechat %v", a, w)
			}
		})
	}
}
