package tollgate_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testkeys"
	"github.com/tollgate/tollgate/internal/testredis"
)

// exampleEnv is the environment caddyfile.example reads, with real key
// files: paysim's provider keys and a fresh ES256 pair for the JWTs.
func exampleEnv(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	keys, err := paysim.LoadOrCreateKeys(filepath.Join(dir, "paysim"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"WEBHOOK_SECRET=example-webhook-secret-0123456789", "REDIS_URL=redis://127.0.0.1:1/0",
		"REDIS_PASSWORD=example-redis-password",
		"TOLLGATE_ADMIN=127.0.0.1:" + strconv.Itoa(testcaddy.FreePort(t)),
		"TOLLGATE_CUSTOMER_SITE=http://127.0.0.1:" + strconv.Itoa(testcaddy.FreePort(t)),
		"TOLLGATE_COURIER_SITE=http://127.0.0.1:" + strconv.Itoa(testcaddy.FreePort(t))}
	for name, value := range keys.Env("http://127.0.0.1:1") {
		env = append(env, name+"="+value)
	}
	priv, pub := writeES256(t, dir)
	return append(env, "JWT_SIGNING_KEY_FILE="+priv, "JWT_PUBLIC_KEY_FILE="+pub)
}

func writeES256(t *testing.T, dir string) (privPath, pubPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	privPath, pubPath = filepath.Join(dir, "jwt.pem"), filepath.Join(dir, "jwt.pub.pem")
	_ = os.WriteFile(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	_ = os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o600)
	return privPath, pubPath
}

func tollgate(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(testcaddy.Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The reference deployment passes `caddy validate` (which provisions every
// module: key files, secrets, Redis URLs) and `caddy adapt`, and the JSON it
// adapts to validates too.
func TestCaddyfileExampleValidatesAndAdapts(t *testing.T) {
	env := exampleEnv(t)
	if out, err := tollgate(t, env, "validate", "--config", "caddyfile.example", "--adapter", "caddyfile"); err != nil {
		t.Fatalf("validate caddyfile.example: %v\n%s", err, out)
	}
	cmd := exec.Command(testcaddy.Binary(t), "adapt", "--config", "caddyfile.example", "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), env...)
	adapted, err := cmd.Output() // the JSON alone; logs go to stderr
	if err != nil {
		t.Fatalf("adapt caddyfile.example: %v", err)
	}
	out := string(adapted)
	jsonPath := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(jsonPath, adapted, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, handler := range []string{`"handler":"authjwt"`, `"handler":"jwt_refresh"`, `"handler":"payproxy"`} {
		if !strings.Contains(out, handler) {
			t.Errorf("adapted config lacks %s", handler)
		}
	}
	if out, err := tollgate(t, env, "validate", "--config", jsonPath); err != nil {
		t.Fatalf("validate the adapted JSON: %v\n%s", err, out)
	}
}

var caddyfileBlock = regexp.MustCompile("(?s)```caddyfile\n(.*?)```")

// markdownFiles are the repository's Markdown files, as slash paths
// relative to its root: the manual lives beside the code it describes.
// Hidden folders (.git, .ci), vendor, testdata and var (demo and paysim
// output) are not the project's documentation.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != "." && (strings.HasPrefix(name, ".") || name == "vendor" || name == "testdata" || name == "var") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(name, ".md") {
			files = append(files, filepath.ToSlash(path))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// mdCaddyfile is one ```caddyfile block of a Markdown file.
type mdCaddyfile struct {
	file, text string
	n          int // its place among the file's blocks, from 1
}

func (c mdCaddyfile) name() string {
	return strings.NewReplacer("/", "_", ".md", "").Replace(c.file) + "_" + strconv.Itoa(c.n) + "_" + firstLine(c.text)
}

// markdownCaddyfiles are the Caddyfile blocks of every Markdown file.
func markdownCaddyfiles(t *testing.T) []mdCaddyfile {
	t.Helper()
	var out []mdCaddyfile
	for _, file := range markdownFiles(t) {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range caddyfileBlock.FindAllStringSubmatch(string(text), -1) {
			out = append(out, mdCaddyfile{file: file, text: b[1], n: i + 1})
		}
	}
	return out
}

// Every Caddyfile example in every Markdown file is loaded by a fresh
// tollgate process and serves requests, as ops would run it: adapting
// alone let an example whose config could never load (authjwt fetching the
// JWK Set of its own site before the listener existed) pass. Each module's
// manual shows its directive at least once.
func TestEveryMarkdownCaddyfileStartsColdAndServes(t *testing.T) {
	blocks := markdownCaddyfiles(t)
	for file, directive := range map[string]string{"authjwt/README.md": "authjwt {", "refresh/README.md": "jwt_refresh {", "payproxy/README.md": "payproxy "} {
		if !slices.ContainsFunc(blocks, func(b mdCaddyfile) bool { return b.file == file && strings.Contains(b.text, directive) }) {
			t.Errorf("%s has no caddyfile example with %q", file, directive)
		}
	}
	w := newColdWorld(t)
	for _, b := range blocks {
		t.Run(b.name(), func(t *testing.T) {
			caddyfile, sites := w.localize(b.text)
			w.start(t, caddyfile, sites, nil, nil)
			for _, base := range sites {
				if strings.Contains(b.text, "authjwt") {
					w.expectUnauthorized(t, base)
				} else if res := call(t, http.MethodGet, base+"/", nil, ""); res.status >= 500 {
					t.Errorf("%s/: %d %s", base, res.status, res.body)
				}
			}
			if loginPath := subdirective(b.text, "login_path"); loginPath != "" {
				for _, base := range sites {
					w.sessionFlow(t, base, loginPath, subdirective(b.text, "refresh_path"))
				}
			}
		})
	}
}

var (
	mdFence   = regexp.MustCompile("(?ms)^[ \t]*```.*?^[ \t]*```[^\n]*$")
	mdCode    = regexp.MustCompile("`[^`\n]*`")
	mdLink    = regexp.MustCompile(`\[[^\]]*\]\(<?([^)\s>]+)>?(?:\s+"[^"]*")?\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*#*\s*$`)
	mdScheme  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// mdProse is a Markdown file without its code: links and headings inside
// code blocks and code spans are text, not Markdown.
func mdProse(text string) string {
	return mdCode.ReplaceAllString(mdFence.ReplaceAllString(text, ""), "")
}

// mdAnchors are the anchors GitHub gives a file's headings: lower case,
// everything but letters, digits, spaces, '-' and '_' dropped, spaces as
// '-', and "-1", "-2" … after a repeated one.
func mdAnchors(text string) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, m := range mdHeading.FindAllStringSubmatch(mdFence.ReplaceAllString(text, ""), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		slug := b.String()
		if n := seen[slug]; n > 0 {
			anchors[slug+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors
}

// Every relative link of every Markdown file leads somewhere: the file or
// folder exists, and a #fragment names a heading of the Markdown file it
// points into (or of the same file). Moving the manual beside the code
// turned every "see …" into a link between files; a moved section must not
// leave a dead one.
func TestEveryLinkBetweenMarkdownFilesResolves(t *testing.T) {
	files := markdownFiles(t)
	anchors := map[string]map[string]bool{}
	texts := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		texts[f], anchors[f] = string(b), mdAnchors(string(b))
	}
	links := 0
	for _, f := range files {
		for _, m := range mdLink.FindAllStringSubmatch(mdProse(texts[f]), -1) {
			target := m[1]
			if mdScheme.MatchString(target) {
				continue // http:, https:, mailto: leave the repository
			}
			links++
			path, fragment, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(f), path)))
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s: link %s: %s does not exist", f, target, dest)
					continue
				}
			}
			if fragment == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				t.Errorf("%s: link %s: a #fragment into %s, which is not Markdown", f, target, dest)
			} else if !anchors[dest][fragment] {
				t.Errorf("%s: link %s: %s has no heading with anchor #%s", f, target, dest, fragment)
			}
		}
	}
	if links == 0 {
		t.Fatal("no relative link found in any Markdown file: the link pattern is broken")
	}
}

// coldWorld is what a README example needs around it: Redis (one with a
// password, for URLs that carry one, and one without), a backend that logs
// users in and answers everything else, key files, secrets.
type coldWorld struct {
	redis    *testredis.Server
	pwRedis  *passwordRedis
	password string
	backend  *httptest.Server
	files    *keyFiles
	env      []string
}

func newColdWorld(t *testing.T) *coldWorld {
	w := &coldWorld{redis: testredis.Start(t), pwRedis: startRedisWithPassword(t, "redis-pw-"+randomHex(t)),
		files: newKeyFiles(t), backend: loginBackend(t)}
	w.password = w.pwRedis.Password
	data := t.TempDir()
	w.env = []string{"HOME=" + data, "XDG_DATA_HOME=" + data, "XDG_CONFIG_HOME=" + data,
		"REDIS_PASSWORD=" + w.password, "WEBHOOK_SECRET=webhook-secret-" + randomHex(t)}
	return w
}

// passwordRedis is a test Redis that requires a password.
type passwordRedis struct {
	*testredis.Server
	Password string
}

func startRedisWithPassword(t *testing.T, password string) *passwordRedis {
	return &passwordRedis{Server: testredis.StartWithPassword(t, password), Password: password}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// loginBackend stands for the unchanged backends: any path ending in
// /login logs user 10138000 in; /crash drops the connection (the proxy
// answers 502 and Caddy writes an error log line with the request);
// everything else answers "upstream <path>".
func loginBackend(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/login"):
			rw.Header().Set("X-Auth-Subject", "10138000")
			rw.Header().Set("X-Auth-Claims", `{"roles":["customer","courier"]}`)
			rw.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(rw, `{"id":"10138000"}`)
		case strings.HasSuffix(r.URL.Path, "/crash"):
			if conn, _, err := http.NewResponseController(rw).Hijack(); err == nil {
				conn.Close()
			}
		default:
			_, _ = io.WriteString(rw, "upstream "+r.URL.Path)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

var (
	siteLine    = regexp.MustCompile(`(?m)^([a-z0-9.-]+\.example\.com|https?://[a-z0-9.-]+:\d+) \{`)
	redisURL    = regexp.MustCompile(`redis://(\S*@)?[^/\s]+`)
	proxyLine   = regexp.MustCompile(`(?m)^(\s*reverse_proxy\s+)\S+`)
	siteURLPath = regexp.MustCompile(`https://([a-z0-9.-]+\.example\.com)/`)
	bindLine    = regexp.MustCompile(`(?m)^(\s*bind\s+)\S+`)
	globalStart = regexp.MustCompile(`(?m)^\{\n`)
)

// localize points an example at this machine: each site on a free
// loopback port (plain http), every Redis URL at a test Redis (the one with
// a password when the URL carries credentials, which are kept), every
// upstream at the backend, URLs of its own sites at their ports, key files
// at generated ones. It returns the Caddyfile and each site's base URL.
func (w *coldWorld) localize(snippet string) (string, map[string]string) {
	sites := map[string]string{}
	for _, m := range siteLine.FindAllStringSubmatch(snippet, -1) {
		sites[m[1]] = "http://127.0.0.1:" + strconv.Itoa(testcaddy.FreePort(w.files.t))
	}
	out := siteLine.ReplaceAllStringFunc(snippet, func(line string) string {
		return sites[siteLine.FindStringSubmatch(line)[1]] + " {"
	})
	out = siteURLPath.ReplaceAllStringFunc(out, func(u string) string {
		if base, ok := sites[siteURLPath.FindStringSubmatch(u)[1]]; ok {
			return base + "/"
		}
		return u
	})
	out = redisURL.ReplaceAllStringFunc(out, func(u string) string {
		if userinfo := redisURL.FindStringSubmatch(u)[1]; userinfo != "" {
			return "redis://" + userinfo + w.pwRedis.Addr()
		}
		return "redis://" + w.redis.Addr()
	})
	out = proxyLine.ReplaceAllString(out, "${1}"+strings.TrimPrefix(w.backend.URL, "http://"))
	out = bindLine.ReplaceAllString(out, "${1}127.0.0.1") // internal listeners: this host's loopback
	return w.files.localize(out), sites
}

// start runs the Caddyfile in a new tollgate process (its own admin port,
// nothing persisted; stdout and stderr also copied to the given files when
// not nil) and waits until every site listens.
func (w *coldWorld) start(t *testing.T, caddyfile string, sites map[string]string, stdout, stderr io.Writer) *process {
	t.Helper()
	ours := fmt.Sprintf("\tadmin 127.0.0.1:%d\n\tpersist_config off\n", testcaddy.FreePort(t))
	if loc := globalStart.FindStringIndex(caddyfile); loc != nil {
		caddyfile = caddyfile[:loc[1]] + ours + caddyfile[loc[1]:]
	} else {
		caddyfile = "{\n" + ours + "}\n" + caddyfile
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	var p *process
	for _, base := range sites {
		if p == nil {
			p = startTollgate(t, w.env, stdout, stderr, strings.TrimPrefix(base, "http://"), "run", "--config", path, "--adapter", "caddyfile")
		} else if err := testcaddy.WaitListening(strings.TrimPrefix(base, "http://"), 10*time.Second); err != nil {
			t.Fatalf("%v\n%s", err, p.log())
		}
	}
	return p
}

// expectUnauthorized: a request without a token is answered by authjwt.
func (w *coldWorld) expectUnauthorized(t *testing.T, base string) {
	t.Helper()
	res := call(t, http.MethodGet, base+"/orders/42", nil, "")
	if res.status != http.StatusUnauthorized || res.json["error"] != "unauthorized" {
		t.Errorf("%s/orders/42 without a token: %d %s, want 401 unauthorized", base, res.status, res.body)
	}
}

// sessionFlow logs in through the backend, uses the access token (which
// authjwt may verify only once its keys are loaded: 503 until then, never
// 401) and refreshes.
func (w *coldWorld) sessionFlow(t *testing.T, base, loginPath, refreshPath string) {
	t.Helper()
	if refreshPath == "" {
		refreshPath = "/auth/refresh"
	}
	login := call(t, http.MethodPost, base+loginPath, map[string]string{"Content-Type": "application/json"}, `{"phone":"13800138000"}`)
	access, _ := login.json["access_token"].(string)
	refresh, _ := login.json["refresh_token"].(string)
	if login.status != http.StatusOK || access == "" || refresh == "" {
		t.Fatalf("login at %s%s: %d %s", base, loginPath, login.status, login.body)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		res := call(t, http.MethodGet, base+"/orders/42", map[string]string{"Authorization": "Bearer " + access}, "")
		if res.status == http.StatusOK && res.body == "upstream /orders/42" {
			break
		}
		if res.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("access token at %s: %d %s", base, res.status, res.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if res := call(t, http.MethodPost, base+refreshPath, map[string]string{"Refresh-Token": refresh}, ""); res.status != http.StatusOK {
		t.Fatalf("refresh at %s%s: %d %s", base, refreshPath, res.status, res.body)
	}
}

// subdirective is the first argument of name in a snippet, or "".
func subdirective(snippet, name string) string {
	m := regexp.MustCompile(`(?m)^\s*` + name + `\s+(\S+)`).FindStringSubmatch(snippet)
	if m == nil {
		return ""
	}
	return m[1]
}

// answer is an HTTP response as the doc tests read it.
type answer struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

var docClient = &http.Client{Timeout: 15 * time.Second}

func call(t *testing.T, method, url string, headers map[string]string, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := docClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	a := answer{status: res.StatusCode, header: res.Header, body: string(b)}
	_ = json.Unmarshal(b, &a.json)
	return a
}

// keyFiles stands in for the key files a README example names under
// /etc/tollgate: the modules read them while parsing, to name the line of a
// bad one, so adapting needs them to exist with the right kind of key.
type keyFiles struct {
	t   *testing.T
	dir string
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

func newKeyFiles(t *testing.T) *keyFiles {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &keyFiles{t: t, dir: t.TempDir(), rsa: r, ec: e}
}

var keyLine = regexp.MustCompile(`(?m)^(\s*)(\w+)(\s+)/etc/tollgate/([\w.-]+)`)

// localize writes each named key file into a temporary folder and points
// the snippet at it.
func (k *keyFiles) localize(snippet string) string {
	return keyLine.ReplaceAllStringFunc(snippet, func(line string) string {
		m := keyLine.FindStringSubmatch(line)
		path := filepath.Join(k.dir, m[4])
		k.write(path, m[2], m[4])
		return m[1] + m[2] + m[3] + path
	})
}

func (k *keyFiles) write(path, directive, name string) {
	var block *pem.Block
	switch {
	case directive == "signing_key":
		der, _ := x509.MarshalPKCS8PrivateKey(k.ec)
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	case directive == "private_key":
		der, _ := x509.MarshalPKCS8PrivateKey(k.rsa)
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	case strings.Contains(name, "rs") || strings.Contains(directive, "public"):
		der, _ := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
		block = &pem.Block{Type: "PUBLIC KEY", Bytes: der}
	default:
		der, _ := x509.MarshalPKIXPublicKey(&k.ec.PublicKey)
		block = &pem.Block{Type: "PUBLIC KEY", Bytes: der}
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		k.t.Fatal(err)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.NewReplacer(" ", "_", "{", "", "/", "_").Replace(strings.TrimSpace(line))
}

// make demo works on a machine where it has never run: the whole
// walkthrough passes, on free ports.
func TestDemoWalksTheWholeMission(t *testing.T) {
	ports := map[string]int{}
	for _, name := range []string{"CUSTOMER_PORT", "COURIER_PORT", "INTERNAL_PORT", "PAYSIM_PORT", "BACKEND_PORT", "REDIS_PORT", "ADMIN_PORT"} {
		ports[name] = testcaddy.FreePort(t)
	}
	cmd := exec.Command("./demo/run.sh")
	cmd.Env = os.Environ()
	for name, port := range ports {
		cmd.Env = append(cmd.Env, name+"="+strconv.Itoa(port))
	}
	cmd.Env = append(cmd.Env, "DEMO_OUT="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "✓ every step passed") {
		t.Fatalf("make demo failed: %v\n%s", err, out)
	}
}

var jsonBlock = regexp.MustCompile("(?s)```json\n(.*?)```")

// readmeAdminSnippet is the JSON admin object for backends that
// docs/operations.md shows.
func readmeAdminSnippet(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range jsonBlock.FindAllStringSubmatch(string(readme), -1) {
		if strings.Contains(b[1], `"remote"`) {
			return b[1]
		}
	}
	t.Fatal("docs/operations.md has no JSON admin snippet with a remote listener")
	return ""
}

// The documented way of exposing /tollgate/… to backends: Caddy's remote
// admin listener with mutual TLS, limited to tollgate's paths. With an
// accepted client certificate the revoke endpoint answers and /load,
// /config/ and /metrics are refused; without one, or with an unknown one,
// the handshake fails.
func TestAdminAPIOverMutualTLSReachesOnlyTollgatePaths(t *testing.T) {
	snippet := readmeAdminSnippet(t)
	ca, caKey := testCA(t, "backends CA")
	client := leafCert(t, ca, caKey, "orders-service")
	stranger, strangerKey := testCA(t, "stranger")
	strangerCert := tls.Certificate{Certificate: [][]byte{stranger.Raw}, PrivateKey: strangerKey}

	local, remote := testcaddy.FreePort(t), testcaddy.FreePort(t)
	admin := strings.NewReplacer(
		`"localhost:2019"`, strconv.Quote("127.0.0.1:"+strconv.Itoa(local)),
		`"10.0.0.5:2021"`, strconv.Quote("127.0.0.1:"+strconv.Itoa(remote)),
		`"<base64 DER of the backends' client CA certificate>"`, strconv.Quote(base64.StdEncoding.EncodeToString(ca.Raw)),
	).Replace(snippet)

	rds := testredis.Start(t)
	files := newKeyFiles(t)
	site := files.localize(fmt.Sprintf("http://127.0.0.1:%d {\n\tjwt_refresh {\n\t\tredis %s\n\t\tsigning_key /etc/tollgate/es256.pem\n\t}\n\trespond 404\n}\n",
		testcaddy.FreePort(t), rds.URL()))
	adapted, _, err := testcaddy.Adapt(site)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	_ = json.Unmarshal(adapted, &cfg)
	var doc map[string]any
	if err := json.Unmarshal([]byte(admin), &doc); err != nil {
		t.Fatalf("docs/operations.md's admin snippet is not JSON: %v\n%s", err, snippet)
	}
	cfg["admin"] = doc["admin"]
	data := t.TempDir()
	proc := runConfig(t, cfg, []string{"HOME=" + data, "XDG_DATA_HOME=" + data, "XDG_CONFIG_HOME=" + data},
		"127.0.0.1:"+strconv.Itoa(remote))

	rootPEM := waitFile(t, filepath.Join(data, "caddy", "pki", "authorities", "local", "root.crt"), proc)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)
	base := "https://127.0.0.1:" + strconv.Itoa(remote)
	with := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: roots, ServerName: "tollgate-admin.internal", Certificates: certs}}}
	}
	backend := with(client)
	// The listener starts before its identity certificate is issued: until
	// then handshakes fail.
	var res *http.Response
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		res, err = backend.Post(base+"/tollgate/sessions/revoke", "application/json", strings.NewReader(`{"user":"10138000"}`))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoke with the backend's certificate: %v\n%s", err, proc.log())
		}
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `"revoked"`) {
		t.Fatalf("revoke: %d %s", res.StatusCode, body)
	}
	for _, c := range []struct{ method, path string }{{"POST", "/load"}, {"GET", "/config/"}, {"GET", "/metrics"}, {"DELETE", "/tollgate/sessions/revoke"}} {
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(`{}`))
		res, err := backend.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s with the backend's certificate: %d, want 403", c.method, c.path, res.StatusCode)
		}
	}
	for name, c := range map[string]*http.Client{"no certificate": with(), "unknown certificate": with(strangerCert)} {
		if res, err := c.Post(base+"/tollgate/sessions/revoke", "application/json", strings.NewReader(`{"user":"10138000"}`)); err == nil {
			res.Body.Close()
			t.Errorf("%s: answered %d, want a failed handshake", name, res.StatusCode)
		}
	}
}

// testCA makes a self-signed CA certificate.
func testCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

// leafCert makes a client certificate signed by ca.
func leafCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key}
}

// process is a tollgate started from a config file by a test, with its
// output kept.
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited
}

func (p *process) log() string { return p.out.String() }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runConfig starts tollgate on a JSON config and waits until addr accepts
// connections; it is stopped at cleanup.
func runConfig(t *testing.T, cfg map[string]any, env []string, addr string) *process {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "caddy.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return startTollgate(t, env, nil, nil, addr, "run", "--config", path)
}

// startTollgate runs the tollgate binary with args, its output kept (and
// copied to stdout/stderr files when given), and waits until every addr
// accepts connections. It is stopped at cleanup.
func startTollgate(t *testing.T, env []string, stdout, stderr io.Writer, addr string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(testcaddy.Binary(t), args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = io.Writer(p.out), io.Writer(p.out)
	if stdout != nil {
		p.cmd.Stdout = io.MultiWriter(p.out, stdout)
	}
	if stderr != nil {
		p.cmd.Stderr = io.MultiWriter(p.out, stderr)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("tollgate %s exited before listening on %s:\n%s", strings.Join(args, " "), addr, p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listening on %s after 60s:\n%s", addr, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop asks tollgate to stop (SIGINT) and kills it if it has not within
// 10 s.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitFile waits for a file the process writes and returns its content.
func waitFile(t *testing.T, path string, p *process) []byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was never written\n%s", path, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A deployment is one site whose session endpoints the log test drives.
type deployment struct {
	base                                          string
	loginPath, refreshPath, logoutPath, logoutAll string
	protected, crash                              string // behind authjwt, proxied to the backend
	issuer, audience, kid                         string
	signer                                        *ecdsa.PrivateKey // the signing key, for expired tokens
}

// secret is a string that must never be in a log, with what it is.
type secret struct{ what, value string }

// Caddy's access log copies each request's headers and URI before any
// handler runs, and its error log does the same for a failed handler: a
// refresh token in Refresh-Token or any token in the query string was
// written in clear, for anyone who reads the logs within reuse_grace to
// take over the session. caddyfile.example (as a whole) and
// refresh/README.md's jwt_refresh example run with their access and error logs in files while
// every session flow happens — login; refresh by header, form and JSON;
// logout; logout_all; a reuse; valid, expired, forged and query-string
// tokens; a failing upstream — and no token, key or secret may appear in
// either file.
func TestNoTokenKeyOrSecretReachesTheLogs(t *testing.T) {
	t.Run("caddyfile.example", func(t *testing.T) {
		w := newColdWorld(t)
		env, d, secrets := exampleDeployment(t, w)
		w.env = append(w.env, env...)
		accessLog, errorLog := logFiles(t)
		p := startTollgate(t, w.env, accessLog, errorLog, strings.TrimPrefix(d.base, "http://"),
			"run", "--config", "caddyfile.example", "--adapter", "caddyfile")
		secrets = append(secrets, sessionFlows(t, d)...)
		p.stop() // every line written
		checkLogs(t, accessLog.Name(), errorLog.Name(), d, secrets)
	})
	t.Run("README jwt_refresh example", func(t *testing.T) {
		w := newColdWorld(t)
		caddyfile, sites := w.localize(markdownExample(t, "refresh/README.md", "jwt_refresh {"))
		accessLog, errorLog := logFiles(t)
		p := w.start(t, caddyfile, sites, accessLog, errorLog)
		var d deployment
		for _, base := range sites {
			d.base = base
		}
		d.loginPath, d.refreshPath, d.logoutPath, d.logoutAll = "/user/login", "/auth/refresh", "/user/logout", "/user/logout-all"
		d.protected, d.crash = "/orders/42", "/orders/crash"
		d.issuer, d.audience, d.kid, d.signer = "https://api.example.com", "api", "es-2025", w.files.ec
		secrets := append(w.secrets(t), macSecrets(t, w.files.ec, "es-2025", d.issuer)...)
		secrets = append(secrets, sessionFlows(t, d)...)
		p.stop() // every line written
		checkLogs(t, accessLog.Name(), errorLog.Name(), d, secrets)
	})
}

func logFiles(t *testing.T) (access, errs *os.File) {
	dir := t.TempDir()
	access, err := os.Create(filepath.Join(dir, "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	errs, err = os.Create(filepath.Join(dir, "error.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { access.Close(); errs.Close() })
	return access, errs
}

// markdownExample is the first caddyfile block of a Markdown file that
// contains marker.
func markdownExample(t *testing.T, file, marker string) string {
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range caddyfileBlock.FindAllStringSubmatch(string(text), -1) {
		if strings.Contains(b[1], marker) {
			return b[1]
		}
	}
	t.Fatalf("no caddyfile example with %q in %s", marker, file)
	return ""
}

var exampleSiteVar = regexp.MustCompile(`(?m)^\{\$(\w+)(?::[^}]*)?\} \{`)

// exampleDeployment is caddyfile.example's environment on this machine —
// every site ({$VAR:default} addresses) on a free port, Redis with a
// password, the backend, paysim's provider keys — its customer site, and
// every secret the environment holds.
func exampleDeployment(t *testing.T, w *coldWorld) ([]string, deployment, []secret) {
	example, err := os.ReadFile("caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keys, err := paysim.LoadOrCreateKeys(filepath.Join(dir, "paysim"))
	if err != nil {
		t.Fatal(err)
	}
	backend := strings.TrimPrefix(w.backend.URL, "http://")
	webhookSecret := "webhook-secret-" + randomHex(t)
	env := []string{"REDIS_URL=redis://" + w.pwRedis.Addr() + "/0", "REDIS_PASSWORD=" + w.password, "BACKEND=" + backend,
		"ORDER_SOURCE=" + w.backend.URL + "/orders/{order_no}", "WEBHOOK_URL=" + w.backend.URL + "/webhooks",
		"WEBHOOK_SECRET=" + webhookSecret, "REUSE_GRACE=1s", "TOLLGATE_INTERNAL_BIND=127.0.0.1",
		"TOLLGATE_ADMIN=127.0.0.1:" + strconv.Itoa(testcaddy.FreePort(t))}
	sites := map[string]string{}
	for _, m := range exampleSiteVar.FindAllStringSubmatch(string(example), -1) {
		sites[m[1]] = "http://127.0.0.1:" + strconv.Itoa(testcaddy.FreePort(t))
		env = append(env, m[1]+"="+sites[m[1]])
	}
	providerEnv := keys.Env("http://127.0.0.1:1")
	for name, value := range providerEnv {
		env = append(env, name+"="+value)
	}
	priv, pub := writeES256(t, dir)
	env = append(env, "JWT_SIGNING_KEY_FILE="+priv, "JWT_PUBLIC_KEY_FILE="+pub)
	signer := readECKey(t, priv)

	d := deployment{base: sites["TOLLGATE_CUSTOMER_SITE"], loginPath: "/customer/login", refreshPath: "/auth/refresh",
		logoutPath: "/auth/logout", logoutAll: "/auth/logout-all", protected: "/api/profile", crash: "/api/crash",
		issuer: "https://customer-api.example.com", audience: "customer-api", kid: "key-1", signer: signer}
	if d.base == "" {
		t.Fatal("caddyfile.example has no {$TOLLGATE_CUSTOMER_SITE} site")
	}
	secrets := []secret{{"WEBHOOK_SECRET", webhookSecret}, {"WECHAT_APIV3_KEY", providerEnv["WECHAT_APIV3_KEY"]},
		{"the Redis password", w.password}}
	for _, f := range []string{priv, providerEnv["ALIPAY_PRIVATE_KEY_FILE"], providerEnv["WECHAT_PRIVATE_KEY_FILE"]} {
		secrets = append(secrets, pemSecrets(t, f)...)
	}
	secrets = append(secrets, macSecrets(t, signer, "key-1", "customer")...)
	return env, d, secrets
}

func readECKey(t *testing.T, path string) *ecdsa.PrivateKey {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey)
}

// pemSecrets are the base64 lines of a private key file.
func pemSecrets(t *testing.T, path string) []secret {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []secret
	for _, line := range strings.Split(string(b), "\n") {
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			out = append(out, secret{"a line of " + filepath.Base(path), line})
		}
	}
	return out
}

// macSecrets are the forms of the refresh-token MAC key jwt_refresh
// derives for kid and realm.
func macSecrets(t *testing.T, key *ecdsa.PrivateKey, kid, realm string) []secret {
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	mac, err := hkdf.Key(sha256.New, der, []byte("tollgate jwt_refresh refresh-token MAC v1"), kid+"\x00realm\x00"+realm, 32)
	if err != nil {
		t.Fatal(err)
	}
	return []secret{{"the refresh MAC key (hex)", fmt.Sprintf("%x", mac)},
		{"the refresh MAC key (base64)", base64.StdEncoding.EncodeToString(mac)},
		{"the refresh MAC key (base64url)", base64.RawURLEncoding.EncodeToString(mac)}}
}

// secrets are the world's own: the Redis password, the webhook secret,
// the generated private keys.
func (w *coldWorld) secrets(t *testing.T) []secret {
	out := []secret{{"the Redis password", w.password}}
	for _, e := range w.env {
		if name, value, _ := strings.Cut(e, "="); name == "WEBHOOK_SECRET" {
			out = append(out, secret{name, value})
		}
	}
	for _, key := range []any{w.files.ec, w.files.rsa} {
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		for _, line := range strings.Split(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				out = append(out, secret{"a line of a private key", line})
			}
		}
	}
	return out
}

// sessionFlows drives every flow that handles a token through d and
// returns the tokens it saw or made.
func sessionFlows(t *testing.T, d deployment) []secret {
	var seen []secret
	keep := func(what string, tokens ...string) {
		for _, tok := range tokens {
			if tok != "" {
				seen = append(seen, secret{what, tok})
			}
		}
	}
	jsonBody := map[string]string{"Content-Type": "application/json"}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	login := func() (access, refresh string) {
		t.Helper()
		r := call(t, http.MethodPost, d.base+d.loginPath, jsonBody, `{"phone":"13800138000"}`)
		access, _ = r.json["access_token"].(string)
		refresh, _ = r.json["refresh_token"].(string)
		if r.status != http.StatusOK || access == "" || refresh == "" {
			t.Fatalf("login: %d %s", r.status, r.body)
		}
		keep("a login's tokens", access, refresh)
		return access, refresh
	}
	pair := func(what string, r answer, want int) (string, string) {
		t.Helper()
		if r.status != want {
			t.Fatalf("%s: %d %s, want %d", what, r.status, r.body, want)
		}
		access, _ := r.json["access_token"].(string)
		refresh, _ := r.json["refresh_token"].(string)
		keep(what, access, refresh)
		return access, refresh
	}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	access, r1 := login()
	_, r2 := pair("refresh by header", call(t, http.MethodPost, d.base+d.refreshPath, map[string]string{"Refresh-Token": r1}, ""), 200)
	_, r3 := pair("refresh by form", call(t, http.MethodPost, d.base+d.refreshPath, form, "grant_type=refresh_token&refresh_token="+r2), 200)
	access, r4 := pair("refresh by JSON", call(t, http.MethodPost, d.base+d.refreshPath, jsonBody, `{"refresh_token":"`+r3+`"}`), 200)
	// r1 is two generations behind: reuse, whatever the grace window.
	pair("reuse", call(t, http.MethodPost, d.base+d.refreshPath, map[string]string{"Refresh-Token": r1}, ""), 400)

	access, r5 := login()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := call(t, http.MethodGet, d.base+d.protected, bearer(access), "")
		if r.status == http.StatusOK {
			break
		}
		if r.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("a valid access token: %d %s", r.status, r.body)
		}
	}
	now := time.Now()
	claims := jwt.MapClaims{"sub": "10138000", "userId": "10138000", "sid": strings.Repeat("a", 32), "iss": d.issuer,
		"aud": d.audience, "typ": "access", "roles": []string{"customer"}, "iat": now.Add(-time.Hour).Unix(),
		"exp": now.Add(-30 * time.Minute).Unix()}
	expired := testkeys.Sign(t, jwt.SigningMethodES256, d.signer, d.kid, claims)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	claims["exp"] = now.Add(time.Hour).Unix()
	forged := testkeys.Sign(t, jwt.SigningMethodES256, other, d.kid, claims)
	keep("an expired token", expired)
	keep("a forged token", forged)
	for what, tok := range map[string]string{"expired": expired, "forged": forged} {
		if r := call(t, http.MethodGet, d.base+d.protected, bearer(tok), ""); r.status != http.StatusUnauthorized {
			t.Errorf("%s token: %d %s", what, r.status, r.body)
		}
	}
	for _, q := range []string{"access_token=" + access, "refresh_token=" + r5, "token=" + r5} {
		call(t, http.MethodGet, d.base+d.protected+"?x=1&"+q, nil, "")
		call(t, http.MethodGet, d.base+d.protected+"?x=1&"+q, bearer(access), "")
	}
	// A token-bearing request the upstream fails: Caddy's error log
	// records it.
	crash := bearer(access)
	crash["Refresh-Token"] = r5
	if r := call(t, http.MethodGet, d.base+d.crash, crash, ""); r.status != http.StatusBadGateway {
		t.Errorf("crash: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodPost, d.base+d.logoutPath, map[string]string{"Refresh-Token": r5}, ""); r.status != http.StatusOK {
		t.Errorf("logout: %d %s", r.status, r.body)
	}
	a6, r6 := login()
	_, _ = login()
	if r := call(t, http.MethodPost, d.base+d.logoutAll, bearer(a6), ""); r.status != http.StatusOK {
		t.Errorf("logout_all: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodPost, d.base+d.logoutPath, form, "token="+r6); r.status != http.StatusOK {
		t.Errorf("logout (RFC 7009 form) after logout_all: %d %s", r.status, r.body)
	}
	keep("the last refresh token", r4)
	return seen
}

// checkLogs reads both logs as Caddy wrote them: no secret, no token (nor
// its signature alone) anywhere; and the lines the filters had to work on
// are really there, filtered, not absent.
func checkLogs(t *testing.T, accessPath, errorPath string, d deployment, secrets []secret) {
	access, _ := os.ReadFile(accessPath)
	errs, _ := os.ReadFile(errorPath)
	logs := map[string]string{"access log": string(access), "error log": string(errs)}
	for name, text := range logs {
		for _, s := range secrets {
			parts := strings.Split(s.value, ".")
			if strings.Contains(text, s.value) || len(parts) == 3 && len(parts[2]) > 20 && strings.Contains(text, parts[2]) {
				t.Errorf("%s holds %s", name, s.what)
			}
		}
	}
	var queryLine, crashLine string
	for _, line := range strings.Split(string(access), "\n") {
		if strings.Contains(line, `"uri":"`+d.protected+"?") {
			queryLine = line
		}
	}
	for _, line := range strings.Split(string(errs), "\n") {
		if strings.Contains(line, "http.log.error") && strings.Contains(line, d.crash) {
			crashLine = line
		}
	}
	if !strings.Contains(queryLine, "x=1") || strings.Contains(queryLine, "token=") {
		t.Errorf("the access log's line of a request with a query token is missing or unfiltered: %s", queryLine)
	}
	if !strings.Contains(queryLine, `"Authorization":["REDACTED"]`) {
		t.Errorf("Caddy's own redaction of Authorization is not in the access log: %s", queryLine)
	}
	if !strings.Contains(crashLine, "User-Agent") || strings.Contains(crashLine, "Refresh-Token") {
		t.Errorf("the error log's line of the failed upstream request is missing or unfiltered: %s", crashLine)
	}
	if n := strings.Count(string(access), "handled request"); n < 20 {
		t.Errorf("the access log has %d requests, want every request of the flows", n)
	}
}

// fileWorld is a Caddyfile that uses every subdirective of authjwt,
// jwt_refresh and payproxy that takes a file (directly, or through a
// {file.*} placeholder), and the files it names, written or not.
type fileWorld struct {
	dir, caddyfile string
	files          map[string][]byte // name in dir → content
}

func newFileWorld(t *testing.T) *fileWorld {
	t.Helper()
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pubDER, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwk, _ := json.Marshal(map[string]any{"keys": []map[string]string{{"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
		"x": base64.RawURLEncoding.EncodeToString(key.PublicKey.X.FillBytes(make([]byte, 32))),
		"y": base64.RawURLEncoding.EncodeToString(key.PublicKey.Y.FillBytes(make([]byte, 32)))}}})
	w := &fileWorld{dir: dir, files: map[string][]byte{
		"signing.pem":         pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		"legacy.pem":          pub,
		"public.pem":          pub,
		"jwks.json":           jwk,
		"hmac-secret":         []byte(strings.Repeat("h", 40) + "\n"),
		"redis-password":      []byte("p/ss#w?rd%20 @x\n"),
		"revocation-password": []byte("p/ss#w?rd%20 @x\n"),
		"apiv3-key":           []byte(strings.Repeat("k", 32) + "\n"),
		"webhook-secret":      []byte(strings.Repeat("w", 40) + "\n"),
	}}
	keys, err := paysim.LoadOrCreateKeys(filepath.Join(t.TempDir(), "paysim"))
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"alipay-private.pem": keys.AlipayPrivateKeyFile, "alipay-public.pem": keys.AlipayPublicKeyFile,
		"wechat-private.pem": keys.WechatPrivateKeyFile, "wechat-public.pem": keys.WechatPlatformPublicKeyFile} {
		if w.files[name], err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	redis := "redis://127.0.0.1:" + strconv.Itoa(testcaddy.FreePort(t)) + "/0" // nothing listens: down, not wrong
	w.caddyfile = strings.ReplaceAll(fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
}
http://127.0.0.1:%d {
	jwt_refresh {
		redis %s {
			password {file.DIR/redis-password}
		}
		signing_key DIR/signing.pem k1
		legacy_prefix OLD_
		legacy_key DIR/legacy.pem
	}
	authjwt {
		key DIR/public.pem k1
		jwks DIR/jwks.json
		revocation %s {
			password {file.DIR/revocation-password}
		}
	}
	respond ok
}
http://127.0.0.1:%d {
	authjwt {
		hmac_secret {file.DIR/hmac-secret}
	}
	respond ok
}
http://127.0.0.1:%d {
	payproxy {
		redis %s
		alipay {
			app_id 2021000000000001
			private_key DIR/alipay-private.pem
			alipay_public_key DIR/alipay-public.pem
		}
		wechat {
			mch_id 1900000001
			app_id wx0000000000000001
			serial_no 5157F09EFDC096DE15EBE81A47057A72
			private_key DIR/wechat-private.pem
			apiv3_key {file.DIR/apiv3-key}
			platform_public_key DIR/wechat-public.pem
			platform_public_key_id PUB_KEY_ID_0001
		}
		webhook http://127.0.0.1:1/hooks {
			secret {file.DIR/webhook-secret}
		}
	}
	respond ok
}
`, testcaddy.FreePort(t), testcaddy.FreePort(t), redis, redis, testcaddy.FreePort(t), testcaddy.FreePort(t), redis), "DIR", dir)
	return w
}

// write puts every file but the skipped one in place.
func (w *fileWorld) write(t *testing.T, skip string) string {
	t.Helper()
	for name, content := range w.files {
		path := filepath.Join(w.dir, name)
		_ = os.Remove(path)
		if name != skip {
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(w.caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// `caddy adapt` and `caddy fmt` run in CI and on laptops that hold no
// production key: like Caddy's own modules, authjwt's, jwt_refresh's and
// payproxy's parsers only record, and with none of the files there the
// Caddyfile adapts. `validate` (which provisions) still refuses it, naming the
// missing file and its subdirective, one file at a time.
func TestAdaptNeedsNoKeyFileAndValidateNamesTheMissingOne(t *testing.T) {
	w := newFileWorld(t)
	cfg := w.write(t, "")
	if out, err := tollgate(t, nil, "validate", "--config", cfg, "--adapter", "caddyfile"); err != nil {
		t.Fatalf("validate with every file in place: %v\n%s", err, out)
	}
	for name := range w.files {
		_ = os.Remove(filepath.Join(w.dir, name))
	}
	cmd := exec.Command(testcaddy.Binary(t), "adapt", "--config", cfg, "--adapter", "caddyfile")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil || !strings.Contains(string(out), `"handler":"jwt_refresh"`) ||
		!strings.Contains(string(out), `"handler":"payproxy"`) {
		t.Fatalf("adapt without the files: %v\n%s%s", err, out, &stderr)
	}
	for file, want := range map[string]string{
		"signing.pem": "signing_key " + filepath.Join(w.dir, "signing.pem") + ": cannot read the file: no such file or directory",
		"legacy.pem":  "legacy_key " + filepath.Join(w.dir, "legacy.pem") + ": cannot read the file: no such file or directory",
		"public.pem":  "key " + filepath.Join(w.dir, "public.pem") + ": cannot read the file: no such file or directory",
		"jwks.json":   "loading jwks " + filepath.Join(w.dir, "jwks.json") + ": open " + filepath.Join(w.dir, "jwks.json") + ": no such file or directory",
		"hmac-secret": "hmac_secret: {file." + filepath.Join(w.dir, "hmac-secret") + "}: cannot read " + filepath.Join(w.dir, "hmac-secret") + ": no such file or directory",
		"redis-password": "http.handlers.jwt_refresh: redis password: {file." + filepath.Join(w.dir, "redis-password") + "}: cannot read " +
			filepath.Join(w.dir, "redis-password") + ": no such file or directory",
		"revocation-password": "revocation password: {file." + filepath.Join(w.dir, "revocation-password") + "}: cannot read " +
			filepath.Join(w.dir, "revocation-password") + ": no such file or directory",
		"alipay-private.pem": "alipay private_key " + filepath.Join(w.dir, "alipay-private.pem") + ": cannot read the file: no such file or directory",
		"alipay-public.pem":  "alipay alipay_public_key " + filepath.Join(w.dir, "alipay-public.pem") + ": cannot read the file: no such file or directory",
		"wechat-private.pem": "wechat private_key " + filepath.Join(w.dir, "wechat-private.pem") + ": cannot read the file: no such file or directory",
		"wechat-public.pem":  "wechat platform_public_key " + filepath.Join(w.dir, "wechat-public.pem") + ": cannot read the file: no such file or directory",
		"apiv3-key": "wechat apiv3_key: {file." + filepath.Join(w.dir, "apiv3-key") + "}: cannot read " + filepath.Join(w.dir, "apiv3-key") +
			": no such file or directory",
		"webhook-secret": "webhook secret: {file." + filepath.Join(w.dir, "webhook-secret") + "}: cannot read " +
			filepath.Join(w.dir, "webhook-secret") + ": no such file or directory",
	} {
		t.Run(file, func(t *testing.T) {
			cfg := w.write(t, file)
			out, err := tollgate(t, nil, "validate", "--config", cfg, "--adapter", "caddyfile")
			if err == nil || !strings.Contains(out, want) {
				t.Fatalf("validate without %s: %v, want an error with %q:\n%s", file, err, want, out)
			}
		})
	}
}

// Every Caddyfile in every Markdown file and caddyfile.example adapts on a machine
// that holds none of the files they name (here: their /etc/tollgate/
// paths point into an empty folder) and none of the variables they read:
// no module's parser reads a file, dials, or needs a secret.
func TestREADMECaddyfilesAndTheExampleAdaptWithoutTheirFiles(t *testing.T) {
	example, err := os.ReadFile("caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	configs := map[string]string{"caddyfile.example": string(example)}
	for _, b := range markdownCaddyfiles(t) {
		configs[b.name()] = b.text
	}
	empty := t.TempDir()
	for name, text := range configs {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "Caddyfile")
			text = strings.ReplaceAll(text, "/etc/tollgate/", empty+"/")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(testcaddy.Binary(t), "adapt", "--config", path, "--adapter", "caddyfile")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if _, err := cmd.Output(); err != nil {
				t.Fatalf("adapt without the files: %v\n%s", err, &stderr)
			}
		})
	}
}
