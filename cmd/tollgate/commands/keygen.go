package commands

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "keygen",
		Usage: "[--alg ES256|ES384|EdDSA|RS256] [--kid <kid>] [--dir <folder>]",
		Short: "Writes a jwt_refresh signing key pair and the Caddyfile lines that use it",
		Long: `
Writes a new signing key pair for jwt_refresh into --dir (default: the
current folder): <kid>.pem, the private key (PKCS#8, mode 0600), and
<kid>.pub.pem, its public half (mode 0644). Existing files are never
overwritten. Then prints the Caddyfile lines that use them: the
signing_key line for jwt_refresh and the key line for authjwt.

--alg
    ES256 (default), ES384, EdDSA (Ed25519) or RS256 (RSA 2048).

--kid
    The key id put into the tokens' kid header. Default:
    <alg>-<UTC date>-<4 random hex digits>, e.g. es256-2026-12-01-9f3a.

To rotate keys, put the new signing_key line first in jwt_refresh and keep
the old one after it until session_max has passed; authjwt follows through
jwks_path or a second key line.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Args = cobra.NoArgs
			cmd.Flags().String("alg", "ES256", "Algorithm: ES256, ES384, EdDSA or RS256")
			cmd.Flags().String("kid", "", "Key id (default: <alg>-<date>-<random>)")
			cmd.Flags().String("dir", ".", "Folder to write the key files into")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdKeygen)
		},
	})
}

// kidPattern keeps a kid usable as a file name and as one Caddyfile token.
var kidPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

func cmdKeygen(fl caddycmd.Flags) (int, error) {
	alg := strings.ToUpper(fl.String("alg"))
	if alg == "EDDSA" {
		alg = "EdDSA"
	}
	key, err := generateKey(alg)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	kid := fl.String("kid")
	if kid == "" {
		kid, err = defaultKid(alg)
		if err != nil {
			return caddy.ExitCodeFailedStartup, err
		}
	}
	if !kidPattern.MatchString(kid) {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--kid %q: use letters, digits, '.', '_' and '-' (at most 64)", kid)
	}
	dir, err := filepath.Abs(fl.String("dir"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	privPath, pubPath, err := writeKeyPair(dir, kid, key)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	fmt.Printf(`# %s key pair %q written:
#   %s (private, keep it on the tollgate hosts only)
#   %s (public)
# jwt_refresh signs with it (put it first; keep the previous signing_key after it until session_max has passed):
	signing_key %s %s
# authjwt verifies with it (or through jwt_refresh's jwks_path):
	key %s %s
`, alg, kid, privPath, pubPath, privPath, kid, pubPath, kid)
	return caddy.ExitCodeSuccess, nil
}

func generateKey(alg string) (crypto.Signer, error) {
	switch alg {
	case "ES256":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "EdDSA":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case "RS256":
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("--alg %q: use ES256, ES384, EdDSA or RS256", alg)
}

func defaultKid(alg string) (string, error) {
	suffix := make([]byte, 2)
	if _, err := rand.Read(suffix); err != nil {
		return "", err
	}
	return strings.ToLower(alg) + "-" + time.Now().UTC().Format("2006-01-02") + "-" + hex.EncodeToString(suffix), nil
}

// writeKeyPair writes <kid>.pem (0600) and <kid>.pub.pem (0644) into dir,
// refusing to replace either file.
func writeKeyPair(dir, kid string, key crypto.Signer) (privPath, pubPath string, err error) {
	privDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return "", "", err
	}
	privPath, pubPath = filepath.Join(dir, kid+".pem"), filepath.Join(dir, kid+".pub.pem")
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s exists: keygen never overwrites a key; choose another --kid or --dir", p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", "", err
		}
	}
	if err := writeNew(privPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		_ = os.Remove(privPath)
		return "", "", err
	}
	return privPath, pubPath, nil
}

// writeNew creates path (failing if it appeared meanwhile) with mode.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing key file: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing key file %s: %w", path, err)
	}
	return f.Close()
}
