//go:build chaos

package chaos

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// webhookSecret signs the events payproxy sends to the receiver.
const webhookSecret = "whsec_chaos_0123456789abcdef01234567"

// instance is one running tollgate process and the port of its site.
type instance struct {
	proc *testcaddy.Process
	port int
	base string
	name string
}

// world is everything the run drives: the real processes and the in-process
// stand-ins (paysim, the backend's login, the webhook receiver, and a small
// load balancer that spreads the providers' notifications over the live
// instances, as the public notify_url would in production).
type world struct {
	t       *testing.T
	redis   *testredis.Server
	sim     *paysim.Sim
	simURL  string
	hooks   *hookReceiver
	backend *httptest.Server
	lbURL   string
	keyFile string
	pollIvl string // current poll_interval, changed by the reload fault
	mu      sync.RWMutex
	insts   []*instance
	started int
}

func newWorld(t *testing.T, n int) *world {
	t.Helper()
	w := &world{t: t, pollIvl: "200ms"}
	w.redis = testredis.Start(t, testredis.WithAOF("always"))
	sim, err := paysim.New(paysim.Config{WechatRefundDelay: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	simSrv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { simSrv.Close(); sim.Close() })
	w.sim, w.simURL = sim, simSrv.URL
	w.hooks = startHookReceiver(t)
	w.backend = startLoginBackend(t)
	lb := httptest.NewServer(http.HandlerFunc(w.balance))
	t.Cleanup(lb.Close)
	w.lbURL = lb.URL
	w.keyFile = writeSigningKey(t)
	for i := 0; i < n; i++ {
		w.addInstance()
	}
	return w
}

// writeSigningKey writes a fresh ES256 key for jwt_refresh.
func writeSigningKey(t *testing.T) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwt-signing.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// site is the Caddyfile of one instance: jwt_refresh in front of the login
// backend, payproxy with both channels pointed at paysim, and webhooks to
// the receiver. max_attempts and max_backoff let events outlast a receiver
// outage of a minute, as a production setting would.
func (w *world) site(port int) string {
	k := w.sim.Keys()
	return fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_refresh {
		redis %[2]s
		signing_key %[3]s k1
		user_claim userId
		access_ttl 5m
		refresh_ttl 1h
		reuse_grace 60s
		login_path /login
		refresh_path /auth/refresh
	}
	payproxy {
		redis %[2]s
		prefix /pay
		# The load drives every operation through one route (no auth).
		operations create status close refund notify
		alipay {
			app_id %[4]s
			private_key %[5]s
			alipay_public_key %[6]s
			gateway %[7]s/gateway.do
			notify_url %[8]s/pay/notify/alipay
		}
		wechat {
			mch_id %[9]s
			app_id %[10]s
			serial_no %[11]s
			private_key %[12]s
			apiv3_key %[13]s
			platform_public_key %[14]s
			platform_public_key_id %[15]s
			base_url %[7]s
			notify_url %[8]s/pay/notify/wechat
		}
		provider_timeout 2s
		lock_ttl 2s
		poll_interval %[16]s
		pay_timeout 1h
		refund_checks 300ms 1s 2s 4s
		webhook %[17]s {
			secret %[18]s
			max_attempts 200
			backoff 100ms
			max_backoff 2s
		}
	}
	reverse_proxy %[19]s
}
`, port, w.redis.URL(), w.keyFile,
		k.AlipayAppID, k.AlipayPrivateKeyFile, k.AlipayPublicKeyFile, w.simURL, w.lbURL,
		k.WechatMchID, k.WechatAppID, k.WechatSerialNo, k.WechatPrivateKeyFile, k.WechatAPIv3Key,
		k.WechatPlatformPublicKeyFile, k.WechatPlatformPublicKeyID, w.pollIvl,
		w.hooks.url(), webhookSecret, w.backend.Listener.Addr().String())
}

// addInstance starts one more tollgate process and puts it behind the
// load generator and the notification balancer.
func (w *world) addInstance() *instance {
	w.t.Helper()
	port := testcaddy.FreePort(w.t)
	proc := testcaddy.StartProcess(w.t, "", w.site(port))
	if err := testcaddy.WaitListening(fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second); err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.started++
	in := &instance{proc: proc, port: port, base: fmt.Sprintf("http://127.0.0.1:%d", port), name: fmt.Sprintf("tg%d", w.started)}
	w.insts = append(w.insts, in)
	return in
}

// removeInstance takes an instance out of rotation (before it is killed,
// as a load balancer's health check would a moment after).
func (w *world) removeInstance(victim *instance) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, in := range w.insts {
		if in == victim {
			w.insts = append(w.insts[:i], w.insts[i+1:]...)
			return
		}
	}
}

// live returns the instances currently in rotation.
func (w *world) live() []*instance {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return append([]*instance(nil), w.insts...)
}

// pick returns a random live instance's base URL; avoid, if possible, is
// not returned (so that retries and duplicates go to another instance).
func (w *world) pick(avoid string) string {
	ins := w.live()
	if len(ins) == 0 {
		return ""
	}
	for range 4 {
		b := ins[mrand.IntN(len(ins))].base
		if b != avoid || len(ins) == 1 {
			return b
		}
	}
	return ins[0].base
}

var lbClient = &http.Client{Timeout: 10 * time.Second}

// balance forwards a provider notification to a live instance, trying the
// next one when an instance does not answer.
func (w *world) balance(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ins := w.live()
	start := mrand.IntN(max(1, len(ins)))
	for i := range ins {
		in := ins[(start+i)%len(ins)]
		req, _ := http.NewRequest(r.Method, in.base+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := lbClient.Do(req)
		if err != nil {
			continue
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for k, v := range resp.Header {
			rw.Header()[k] = v
		}
		rw.WriteHeader(resp.StatusCode)
		_, _ = rw.Write(out)
		return
	}
	rw.WriteHeader(http.StatusBadGateway)
}

// startLoginBackend is the backend's own login: any {"user": "..."} is a
// customer; tollgate turns the answer into a session.
func startLoginBackend(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			User string `json:"user"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil || in.User == "" {
			http.Error(w, `{"msg":"user required"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Auth-Subject", in.User)
		w.Header().Set("X-Auth-Claims", `{"roles":["customer"]}`)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":%q}`, in.User)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// listenSamePort reopens a listener on addr; the port may take a moment to
// be free again after a Close.
func listenSamePort(addr string) (net.Listener, error) {
	var err error
	for range 100 {
		var l net.Listener
		if l, err = net.Listen("tcp", addr); err == nil {
			return l, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, err
}
