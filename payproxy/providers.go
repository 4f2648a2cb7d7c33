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
	priv, err := readProviderKey("alipay private_key", c.PrivateKey, privateKey)
	if err != nil {
		return nil, err
	}
	pub, err := readProviderKey("alipay alipay_public_key", c.AlipayPublicKey, publicKey)
	if err != nil {
		return nil, err
	}
	gateway, err := resolve.Value(c.Gateway)
	if err != nil {
		return nil, fmt.Errorf("alipay gateway: %w", err)
	}
	return alipay.New(alipay.Config{
		AppID: c.AppID, PrivateKeyPEM: priv, PublicKeyPEM: pub,
		Gateway: gateway, NotifyURL: c.NotifyURL, HTTPClient: client,
	})
}

func (c *WechatConfig) build(client *http.Client) (Provider, error) {
	priv, err := readProviderKey("wechat private_key", c.PrivateKey, privateKey)
	if err != nil {
		return nil, err
	}
	pub, err := readProviderKey("wechat platform_public_key", c.PlatformPublicKey, publicKey)
	if err != nil {
		return nil, err
	}
	apiv3, err := resolve.Value(c.APIV3Key)
	if err != nil {
		return nil, fmt.Errorf("wechat apiv3_key: %w", err)
	}
	if len(apiv3) != apiv3KeySize {
		return nil, fmt.Errorf("wechat apiv3_key: %d bytes; it must be exactly %d (the APIv3 key set in the merchant platform)",
			len(apiv3), apiv3KeySize)
	}
	baseURL, err := resolve.Value(c.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("wechat base_url: %w", err)
	}
	return wechat.New(wechat.Config{
		MchID: c.MchID, AppID: c.AppID, SerialNo: c.SerialNo, PrivateKeyPEM: priv,
		APIv3Key: apiv3, PlatformPublicKeyPEM: pub,
		PlatformPublicKeyID: c.PlatformPublicKeyID, BaseURL: baseURL, NotifyURL: c.NotifyURL,
		HTTPClient: client,
	})
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
	where := path + resolve.Origin(raw)
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
