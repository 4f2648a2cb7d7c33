package payproxy_test

import (
	"os"
	"strings"
	"testing"
)

// Review (hostile): resolve.Where (bd51c18) hides what a placeholder gave
// only when it has several lines, a PEM header or over 4 KiB. Alipay's
// console hands out the app private key as one bare base64 line (no
// "-----BEGIN", no newline, ~1.6 KiB for RSA-2048), the form its SDKs take
// and the one ops put in a secret: `private_key {env.ALIPAY_PRIVATE_KEY}`
// holding it "looks like a path", and the load error (logged, answered by
// the admin API's /load) quotes the whole private key.
func TestAnAlipayPrivateKeyGivenAsOneBase64LineNeverReachesTheLoadError(t *testing.T) {
	k := realKeys(t)
	pem, err := os.ReadFile(k.AlipayPrivateKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	var body []string
	for _, l := range strings.Split(strings.TrimSpace(string(pem)), "\n") {
		if !strings.HasPrefix(l, "-----") {
			body = append(body, strings.TrimSpace(l))
		}
	}
	oneLine := strings.Join(body, "")
	t.Setenv("TG_REVIEW_ALIPAY_KEY_B64", oneLine)
	err = validatePayproxy(t, "redis redis://127.0.0.1:1/0\n"+alipayBlock("{env.TG_REVIEW_ALIPAY_KEY_B64}", k.AlipayPublicKeyFile))
	if err == nil {
		t.Fatal("a private key given as its contents was accepted as a path")
	}
	if strings.Contains(err.Error(), oneLine[len(oneLine)/2:len(oneLine)/2+64]) {
		msg := err.Error()
		at := strings.Index(msg, oneLine[:32])
		t.Fatalf("the load error carries the whole %d-byte private key: …%.60s…", len(oneLine), msg[max(0, at-20):])
	}
}
