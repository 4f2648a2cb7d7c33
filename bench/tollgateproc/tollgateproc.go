// Package tollgateproc runs a tollgate process for the load drivers of
// bench/: a payproxy route offering both channels at a paysim, started
// from a Caddyfile in a temporary folder.
package tollgateproc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
)

// Caddyfile is a site on 127.0.0.1:port with payproxy on redisURL, both
// channels at simURL, polling every 10 minutes (out of the measurements'
// way), and the admin API on admin ("" = off).
func Caddyfile(k paysim.Keys, simURL, redisURL string, port int, admin string) string {
	return CaddyfileWith(k, simURL, redisURL, port, admin, "poll_interval 10m")
}

// CaddyfileWith is Caddyfile with extra lines in the payproxy block in
// place of its poll_interval (a driver that needs the poller, refunds or
// a webhook says so).
func CaddyfileWith(k paysim.Keys, simURL, redisURL string, port int, admin, extra string) string {
	if admin == "" {
		admin = "off"
	}
	return fmt.Sprintf(`{
	admin %[14]s
	auto_https off
	persist_config off
}
http://127.0.0.1:%[1]d {
	payproxy {
		redis %[2]s
		alipay {
			app_id %[3]s
			private_key %[4]s
			alipay_public_key %[5]s
			gateway %[6]s/gateway.do
			notify_url http://127.0.0.1:%[1]d/pay/notify/alipay
		}
		wechat {
			mch_id %[7]s
			app_id %[8]s
			serial_no %[9]s
			private_key %[10]s
			apiv3_key %[11]s
			platform_public_key %[12]s
			platform_public_key_id %[13]s
			base_url %[6]s
			notify_url http://127.0.0.1:%[1]d/pay/notify/wechat
		}
		%[15]s
	}
}
`, port, redisURL, k.AlipayAppID, k.AlipayPrivateKeyFile, k.AlipayPublicKeyFile, simURL,
		k.WechatMchID, k.WechatAppID, k.WechatSerialNo, k.WechatPrivateKeyFile, k.WechatAPIv3Key,
		k.WechatPlatformPublicKeyFile, k.WechatPlatformPublicKeyID, admin, strings.ReplaceAll(extra, "\n", "\n\t\t"))
}

// Proc is a running tollgate.
type Proc struct {
	cmd *exec.Cmd
	dir string
}

// Start runs bin on cf (its temporary files, such as spooled bills, in
// the process's folder) and waits until port answers.
func Start(bin, cf string, port int) (*Proc, error) {
	dir, err := os.MkdirTemp("", "tollgateproc-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--config", path, "--adapter", "caddyfile")
	logf, _ := os.Create(filepath.Join(dir, "tollgate.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, dir: dir}
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return p, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Stop()
	return nil, fmt.Errorf("tollgate did not start")
}

// Stop ends the process (SIGINT) and removes its folder.
func (p *Proc) Stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	_ = p.cmd.Wait()
	os.RemoveAll(p.dir)
}

// Log is the end of what the process printed, n lines at most.
func (p *Proc) Log(n int) string {
	b, _ := os.ReadFile(filepath.Join(p.dir, "tollgate.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// PeakKiB is the process's peak resident set size so far (VmHWM, Linux).
func (p *Proc) PeakKiB() int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return kib
		}
	}
	return 0
}
