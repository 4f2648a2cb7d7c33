package payproxy

import (
	"crypto/rsa"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/tollgate/tollgate/internal/jwtkey"
	"github.com/tollgate/tollgate/internal/resolve"
	"github.com/tollgate/tollgate/payproxy/alipay"
	"github.com/tollgate/tollgate/payproxy/wechat"
)

// buildProviders reads each channel's key files and secrets (placeholders
// resolved) and builds its adapter; errors name the subdirective and the
// file, never a key or a secret.
func (p *PayProxy) buildProviders() error {
	p.providers = map[string]Provider{}
	client := &http.Client{Timeout: time.Duration(p.ProviderTimeout)}
	if p.Alipay != nil {
		a, err := p.Alipay.build(client)
		if err != nil {
			return err
		}
		p.providers["alipay"] = a
	}
	if p.Wechat != nil {
		w, err := p.Wechat.build(client)
		if err != nil {
			return err
		}
		p.providers["wechat"] = w
	}
	return nil
}

func (c *AlipayConfig) build(client *http.Client) (Provider, error) {
	r := resolver{block: "alipay"}
	cfg := alipay.Config{AppID: r.value("app_id", c.AppID), PrivateKeyPEM: r.key("private_key", c.PrivateKey, privateKey),
		PublicKeyPEM: r.key("alipay_public_key", c.AlipayPublicKey, publicKey), Gateway: r.value("gateway", c.Gateway),
		NotifyURL: r.value("notify_url", c.NotifyURL), HTTPClient: client}
	if r.err != nil {
		return nil, r.err
	}
	return alipay.New(cfg)
}

func (c *WechatConfig) build(client *http.Client) (Provider, error) {
	r := resolver{block: "wechat"}
	cfg := wechat.Config{MchID: r.value("mch_id", c.MchID), AppID: r.value("app_id", c.AppID),
		SerialNo: r.value("serial_no", c.SerialNo), PrivateKeyPEM: r.key("private_key", c.PrivateKey, privateKey),
		APIv3Key: r.value("apiv3_key", c.APIV3Key), PlatformPublicKeyPEM: r.key("platform_public_key", c.PlatformPublicKey, publicKey),
		PlatformPublicKeyID: r.value("platform_public_key_id", c.PlatformPublicKeyID),
		BaseURL:             r.value("base_url", c.BaseURL), NotifyURL: r.value("notify_url", c.NotifyURL), HTTPClient: client}
	if r.err != nil {
		return nil, r.err
	}
	if n := len(cfg.APIv3Key); n != apiv3KeySize {
		return nil, fmt.Errorf("wechat apiv3_key: %d bytes; it must be exactly %d (the APIv3 key set in the merchant platform)",
			n, apiv3KeySize)
	}
	return wechat.New(cfg)
}

// resolver resolves the {env.*}/{file.*} placeholders of a block's values
// and reads its key files, keeping the first error, which names the block
// and the value's subdirective.
type resolver struct {
	block string
	err   error
}

// key is the PEM of a key file of the block (see readProviderKey).
func (r *resolver) key(name, raw string, use keyUse) string {
	if r.err != nil {
		return ""
	}
	pem, err := readProviderKey(r.block+" "+name, raw, use)
	r.err = err
	return pem
}

func (r *resolver) value(name, raw string) string {
	if r.err != nil {
		return ""
	}
	v, err := resolve.Value(raw)
	if err != nil {
		r.err = fmt.Errorf("%s %s: %w", r.block, name, err)
	}
	return v
}

// keyUse is what a provider key file must hold.
type keyUse int

const (
	privateKey keyUse = iota // the merchant's RSA private key, which signs requests
	publicKey                // the provider's RSA public key, which verifies its answers
)

// readProviderKey resolves a key file's path and reads it with
// internal/jwtkey's policy for its use — a private key file must hold a
// private key; a public key file must hold a public key or a certificate,
// never a private key — and the providers' own rule: the key is RSA (both
// sign with RSA-SHA256). It returns the PEM for the provider's SDK.
func readProviderKey(name, raw string, use keyUse) (string, error) {
	path, err := resolve.Value(raw)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	where := resolve.Where(raw, path)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s %s: cannot read the file: %w", name, where, unwrapPath(err))
	}
	var key any
	if use == privateKey {
		signer, perr := jwtkey.ParseSigning(data)
		if perr == nil {
			key = signer.Public()
		}
		err = perr
	} else {
		key, err = jwtkey.ParseVerifying(data)
	}
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", name, where, err)
	}
	if _, ok := key.(*rsa.PublicKey); !ok {
		return "", fmt.Errorf("%s %s: a %T; Alipay and WeChat Pay keys are RSA", name, where, key)
	}
	return string(data), nil
}

// unwrapPath drops the path of a file error: the message names it already.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// redactURL is u without its password, for errors; a value that is not a
// URL is not shown at all.
func redactURL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return "(not a URL)"
	}
	return parsed.Redacted()
}
