package payproxy_test

import (
	"os"
	"strings"
	"testing"
)

// Review (hostile): an operator who writes a key as a placeholder that
// holds the key itself — `private_key {file./etc/tollgate/alipay.pem}`
// (the DESIGN's "secrets come from {file./path}") or `{env.ALIPAY_KEY}`
// filled from a Kubernetes secret — makes readProviderKey take the PEM for
// a path: os.ReadFile fails and the load error, which Caddy logs and the
// admin API answers, carries the merchant's private key verbatim.
func TestAPrivateKeyGivenAsItsOwnContentsNeverReachesTheLoadError(t *testing.T) {
	k := realKeys(t)
	pem, err := os.ReadFile(k.AlipayPrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(pem)), "\n")
	secretLine := lines[len(lines)/2] // a line of the key's body
	t.Setenv("TG_REVIEW_ALIPAY_KEY", string(pem))
	for name, value := range map[string]string{
		"file placeholder": "{file." + k.AlipayPrivateKeyFile + "}",
		"env placeholder":  "{env.TG_REVIEW_ALIPAY_KEY}",
	} {
		t.Run(name, func(t *testing.T) {
			err := validatePayproxy(t, "redis redis://127.0.0.1:1/0\n"+alipayBlock(value, k.AlipayPublicKeyFile))
			if err == nil {
				t.Fatal("a private key given as its contents was accepted as a path")
			}
			if strings.Contains(err.Error(), secretLine) || strings.Contains(err.Error(), "PRIVATE KEY") {
				t.Fatalf("the load error carries the private key:\n%v", err)
			}
		})
	}
}
