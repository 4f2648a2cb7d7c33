package refresh

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testkeys"
	"github.com/tollgate/tollgate/internal/testredis"
)

// testKeyFiles are PEM files generated once per test binary (2048-bit RSA
// is slow under -race).
type testKeyFiles struct {
	dir                   string
	es256, rsa, es384, ed string // private keys
	es256Pub, rsaPub      string // public halves
	es256Key              *ecdsa.PrivateKey
	rsaKey                *rsa.PrivateKey
	otherEC               *ecdsa.PrivateKey // not configured anywhere: forgeries
}

var (
	keysOnce sync.Once
	tk       testKeyFiles
)

func testKeys(t testing.TB) *testKeyFiles {
	if t != nil {
		t.Helper()
	}
	keysOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tollgate-refresh-keys-")
		must(err)
		tk.dir = dir
		tk.es256Key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tk.rsaKey, err = rsa.GenerateKey(rand.Reader, 2048)
		must(err)
		tk.otherEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		es384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		must(err)
		_, ed, err := ed25519.GenerateKey(rand.Reader)
		must(err)
		tk.es256 = writePrivatePEM(dir, "es256.pem", tk.es256Key)
		tk.rsa = writePrivatePEM(dir, "rsa.pem", tk.rsaKey)
		tk.es384 = writePrivatePEM(dir, "es384.pem", es384)
		tk.ed = writePrivatePEM(dir, "ed25519.pem", ed)
		tk.es256Pub = writePublicPEM(dir, "es256.pub.pem", tk.es256Key.Public())
		tk.rsaPub = writePublicPEM(dir, "rsa.pub.pem", tk.rsaKey.Public())
	})
	return &tk
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tk.dir != "" {
		os.RemoveAll(tk.dir)
	}
	os.Exit(code)
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func writePrivatePEM(dir, name string, key crypto.Signer) string {
	path, err := testkeys.WritePrivate(dir, name, key)
	must(err)
	return path
}

func writePublicPEM(dir, name string, pub crypto.PublicKey) string {
	path, err := testkeys.WritePublic(dir, name, pub)
	must(err)
	return path
}

// loginBackend stands for the unchanged backend's own login: POST /login
// with {"user": "...", "claims": {...}} answers 200 with X-Auth-Subject (and
// X-Auth-Claims) when user is set, 401 otherwise. Every other path answers
// "upstream <path>".
type loginBackend struct {
	srv         *httptest.Server
	sawInjected atomic.Bool // a request reached it with an X-Auth-* header
	logins      atomic.Int64
}

func startBackend(t *testing.T) *loginBackend {
	b := &loginBackend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(headerSubject) != "" || r.Header.Get(headerClaims) != "" {
			b.sawInjected.Store(true)
		}
		if r.URL.Path != "/login" {
			fmt.Fprintf(w, "upstream %s", r.URL.Path)
			return
		}
		b.logins.Add(1)
		var req struct {
			User   string         `json:"user"`
			Claims map[string]any `json:"claims"`
		}
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "application/json")
		if req.User == "" {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"msg":"wrong code"}`)
			return
		}
		w.Header().Set(headerSubject, req.User)
		if req.Claims != nil {
			c, _ := json.Marshal(req.Claims)
			w.Header().Set(headerClaims, string(c))
		}
		fmt.Fprintf(w, `{"id":%q,"nickname":"n-%s"}`, req.User, req.User)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *loginBackend) hostPort() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// env is one test setup: a redis-server, the login backend and Caddy.
type env struct {
	t       *testing.T
	rd      *testredis.Server
	backend *loginBackend
	port    int
	base    string
	caddy   *testcaddy.Instance
}

// testRealm is the realm of the test sites: their issuer's, by default.
const testRealm = "https://tollgate.test"

// siteBlock is the standard test site: jwt_refresh in front of the backend.
// extra goes inside the jwt_refresh block.
func siteBlock(port int, redisURL, backend, extra string) string {
	k := testKeys(nil)
	return fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_refresh {
		redis %s
		signing_key %s es1
		signing_key %s rs1
		issuer https://tollgate.test
		audience api
		user_claim userId
		login_path /login
		logout_path /logout
		logout_all_path /logout_all
		jwks_path /jwks.json
		%s
	}
	reverse_proxy %s
}
`, port, redisURL, k.es256, k.rsa, withTimings(extra), backend)
}

// withTimings adds the tests' short default lifetimes unless extra sets
// them; access_ttl defaults to the refresh_ttl in use (it may not exceed it).
func withTimings(extra string) string {
	refreshTTL := "10s"
	if m := regexp.MustCompile(`refresh_ttl\s+(\S+)`).FindStringSubmatch(extra); m != nil {
		refreshTTL = m[1]
	}
	for _, d := range []string{"refresh_ttl 10s", "session_max 20s", "reuse_grace 1s", "access_ttl " + refreshTTL} {
		if !strings.Contains(extra, strings.Fields(d)[0]) {
			extra += "\n\t\t" + d
		}
	}
	return extra
}

// startEnv runs a fresh Redis, the backend and an in-process Caddy.
func startEnv(t *testing.T, extra string) *env {
	t.Helper()
	testKeys(t)
	e := &env{t: t, rd: testredis.Start(t), backend: startBackend(t)}
	e.port = testcaddy.FreePort(t)
	e.base = fmt.Sprintf("http://127.0.0.1:%d", e.port)
	e.caddy = testcaddy.Start(t, "", siteBlock(e.port, e.rd.URL(), e.backend.hostPort(), extra))
	return e
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// response is a decoded answer of one of the endpoints.
type response struct {
	status int
	header http.Header
	pair   tokenPair
	err    struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	raw []byte
}

func do(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	out := response{status: resp.StatusCode, header: resp.Header}
	out.raw, _ = io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		_ = json.Unmarshal(out.raw, &out.pair)
	} else {
		_ = json.Unmarshal(out.raw, &out.err)
	}
	return out
}

func post(t testing.TB, url, contentType, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(t, req)
}

// login logs user in through the backend and returns the token response.
func login(t testing.TB, base, user string) response {
	t.Helper()
	r := post(t, base+"/login", "application/json", fmt.Sprintf(`{"user":%q,"claims":{"roles":["customer"]}}`, user))
	if r.status != http.StatusOK || r.pair.RefreshToken == "" {
		t.Fatalf("login %s: %d %s", user, r.status, r.raw)
	}
	return r
}

// refresh presents rt in the default header.
func refreshWith(t testing.TB, base, rt string) response {
	t.Helper()
	return post(t, base+"/auth/refresh", "", "", "Refresh-Token", rt)
}

func expectStatus(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.status != status || (code != "" && r.err.Error != code) {
		t.Fatalf("got %d %s, want %d %s", r.status, r.raw, status, code)
	}
}

// claimsOf decodes a JWT's payload without verifying it (the tests check
// what tollgate put there).
func claimsOf(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func genOf(t testing.TB, token string) int64 {
	t.Helper()
	g, _ := claimsOf(t, token)["gen"].(float64)
	return int64(g)
}

func sidOf(t testing.TB, token string) string {
	t.Helper()
	s, _ := claimsOf(t, token)["sid"].(string)
	return s
}

// storedGen reads a session's generation straight from Redis.
func (e *env) storedGen(user, sid string) string {
	e.t.Helper()
	return e.rd.Client().HGet(e.t.Context(), sessionKey(testRealm, user, sid), "gen").Val()
}

// sameDump fails when Redis changed.
func sameDump(t testing.TB, before, after map[string]string) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("redis changed: %d keys before, %d after\nbefore %v\nafter %v", len(before), len(after), before, after)
	}
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("redis key %s changed:\nbefore %s\nafter  %s", k, v, after[k])
		}
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func itoa(n int) string { return fmt.Sprint(n) }

// headerOf decodes a JWT's header.
func headerOf(t testing.TB, token string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}
