package commands_test

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestKeygenPrintsLinesThatJwtRefreshSignsWithAndAuthjwtAccepts: for each
// algorithm, the printed Caddyfile lines go unchanged into a real Caddy;
// the tokens carry the kid and the algorithm, and authjwt lets them in.
func TestKeygenPrintsLinesThatJwtRefreshSignsWithAndAuthjwtAccepts(t *testing.T) {
	for _, alg := range []string{"ES256", "ES384", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			out := ok(t, "keygen", "--alg", alg, "--dir", dir).stdout
			kid := regexp.MustCompile(`key pair "([^"]+)" written`).FindStringSubmatch(out)
			if kid == nil || !regexp.MustCompile(`^[a-z0-9]+-\d{4}-\d\d-\d\d-[0-9a-f]{4}$`).MatchString(kid[1]) {
				t.Fatalf("keygen printed no default kid:\n%s", out)
			}
			priv, err := os.Stat(filepath.Join(dir, kid[1]+".pem"))
			if err != nil || priv.Mode().Perm() != 0o600 {
				t.Fatalf("private key file: %v %v", priv, err)
			}

			w := startKeyWorld(t, out)
			tk := w.login(t, "u1")
			if h := jwtPart(t, tk.AccessToken, 0); h["kid"] != kid[1] || h["alg"] != alg {
				t.Fatalf("access token header %v, want kid %s alg %s", h, kid[1], alg)
			}
			req, _ := http.NewRequest(http.MethodGet, w.base+"/api/orders", nil)
			req.Header.Set("Authorization", "Bearer "+tk.AccessToken)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("authjwt answered %d to a token signed with the new key", resp.StatusCode)
			}
		})
	}
}

// TestKeygenNeverOverwritesAKeyAndRefusesBadFlags: a second keygen with
// the same kid leaves the first key as it was; a bad algorithm or kid
// writes nothing.
func TestKeygenNeverOverwritesAKeyAndRefusesBadFlags(t *testing.T) {
	dir := t.TempDir()
	ok(t, "keygen", "--kid", "api-2026", "--dir", dir)
	before := readFile(t, filepath.Join(dir, "api-2026.pem"))
	refused(t, "exists: keygen never overwrites a key", "keygen", "--kid", "api-2026", "--dir", dir)
	if readFile(t, filepath.Join(dir, "api-2026.pem")) != before {
		t.Fatal("the existing private key changed")
	}

	empty := t.TempDir()
	refused(t, `--alg "HS256": use ES256, ES384, EdDSA or RS256`, "keygen", "--alg", "HS256", "--dir", empty)
	refused(t, `--kid "../escape"`, "keygen", "--kid", "../escape", "--dir", empty)
	refused(t, `--kid "two words"`, "keygen", "--kid", "two words", "--dir", empty)
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("a refused keygen wrote %v", entries)
	}
}
