package tollgate_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/paysim"
	"github.com/tollgate/tollgate/internal/testcaddy"
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

// Every Caddyfile example in the README adapts: the manual cannot drift
// from the parser.
func TestREADMECaddyfileSnippetsAdapt(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := caddyfileBlock.FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 3 {
		t.Fatalf("found %d caddyfile examples in README.md, want one per directive at least", len(blocks))
	}
	files := newKeyFiles(t)
	for i, b := range blocks {
		snippet := files.localize(b[1])
		t.Run(strconv.Itoa(i+1)+"_"+firstLine(snippet), func(t *testing.T) {
			if _, _, err := testcaddy.Adapt(snippet); err != nil {
				t.Fatalf("README example %d does not adapt: %v\n%s", i+1, err, snippet)
			}
		})
	}
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
