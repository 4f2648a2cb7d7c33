package paysim

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Keys is every identifier and secret a merchant (payproxy) needs to talk to
// the simulator as if it were Alipay and WeChat Pay. The *File fields are
// absolute paths of PEM files in exactly the form the SDKs read.
type Keys struct {
	AlipayAppID            string
	AlipayPrivateKeyFile   string // merchant app private key (PKCS#8 PEM)
	AlipayPublicKeyFile    string // Alipay platform public key (PKIX PEM)
	AlipayAppPrivateKeyPEM string
	AlipayPublicKeyPEM     string

	WechatMchID                 string
	WechatAppID                 string
	WechatSerialNo              string // serial of the merchant API certificate
	WechatPrivateKeyFile        string // merchant API private key (apiclient_key.pem, PKCS#8)
	WechatAPIv3Key              string // 32 bytes
	WechatPlatformPublicKeyFile string // WeChat Pay platform public key (pub_key.pem, PKIX)
	WechatPlatformPublicKeyID   string // PUB_KEY_ID_…
}

// Env returns the paysim.env names and values. baseURL is the simulator's
// root URL (no trailing slash).
func (k Keys) Env(baseURL string) map[string]string {
	baseURL = strings.TrimRight(baseURL, "/")
	return map[string]string{
		"PAYSIM_URL":                      baseURL,
		"ALIPAY_APP_ID":                   k.AlipayAppID,
		"ALIPAY_PRIVATE_KEY_FILE":         k.AlipayPrivateKeyFile,
		"ALIPAY_PUBLIC_KEY_FILE":          k.AlipayPublicKeyFile,
		"ALIPAY_GATEWAY":                  baseURL + "/gateway.do",
		"WECHAT_MCH_ID":                   k.WechatMchID,
		"WECHAT_APP_ID":                   k.WechatAppID,
		"WECHAT_SERIAL_NO":                k.WechatSerialNo,
		"WECHAT_PRIVATE_KEY_FILE":         k.WechatPrivateKeyFile,
		"WECHAT_APIV3_KEY":                k.WechatAPIv3Key,
		"WECHAT_PLATFORM_PUBLIC_KEY_FILE": k.WechatPlatformPublicKeyFile,
		"WECHAT_PLATFORM_PUBLIC_KEY_ID":   k.WechatPlatformPublicKeyID,
		"WECHAT_BASE_URL":                 baseURL,
	}
}

// EnvNames is the order in which paysim.env lists the names.
var EnvNames = []string{
	"PAYSIM_URL", "ALIPAY_APP_ID", "ALIPAY_PRIVATE_KEY_FILE", "ALIPAY_PUBLIC_KEY_FILE", "ALIPAY_GATEWAY",
	"WECHAT_MCH_ID", "WECHAT_APP_ID", "WECHAT_SERIAL_NO", "WECHAT_PRIVATE_KEY_FILE", "WECHAT_APIV3_KEY",
	"WECHAT_PLATFORM_PUBLIC_KEY_FILE", "WECHAT_PLATFORM_PUBLIC_KEY_ID", "WECHAT_BASE_URL",
}

// Dir is the keys folder, where paysim.env goes.
func (k Keys) Dir() string { return filepath.Dir(k.AlipayPrivateKeyFile) }

// WriteEnvFile writes paysim.env (one NAME=value a line) into dir.
func (k Keys) WriteEnvFile(dir, baseURL string) (string, error) {
	env := k.Env(baseURL)
	var b strings.Builder
	for _, n := range EnvNames {
		fmt.Fprintf(&b, "%s=%s\n", n, env[n])
	}
	p := filepath.Join(dir, "paysim.env")
	return p, os.WriteFile(p, []byte(b.String()), 0o600)
}

// keyMaterial is the full secret state: the merchant halves (given to the
// merchant through Keys) and the platform halves (kept by the simulator).
type keyMaterial struct {
	ids keyIDs

	alipayAppPriv      *rsa.PrivateKey // merchant signs requests; we verify with its public half
	alipayPlatformPriv *rsa.PrivateKey // we sign responses and notifications
	wechatMchPriv      *rsa.PrivateKey
	wechatPlatformPriv *rsa.PrivateKey
}

// keyIDs is persisted as ids.json so a restart reuses the same identities.
type keyIDs struct {
	AlipayAppID               string `json:"alipay_app_id"`
	WechatMchID               string `json:"wechat_mch_id"`
	WechatAppID               string `json:"wechat_app_id"`
	WechatSerialNo            string `json:"wechat_serial_no"`
	WechatAPIv3Key            string `json:"wechat_apiv3_key"`
	WechatPlatformPublicKeyID string `json:"wechat_platform_public_key_id"`
}

// File names inside the keys folder.
const (
	fileAlipayAppPriv      = "alipay_app_private_key.pem"
	fileAlipayAppPub       = "alipay_app_public_key.pem"
	fileAlipayPlatformPriv = "alipay_platform_private_key.pem"
	fileAlipayPlatformPub  = "alipay_public_key.pem"
	fileWechatMchPriv      = "wechat_apiclient_key.pem"
	fileWechatMchPub       = "wechat_apiclient_public_key.pem"
	fileWechatPlatformPriv = "wechat_platform_private_key.pem"
	fileWechatPlatformPub  = "wechat_pub_key.pem"
	fileWechatAPIv3Key     = "wechat_apiv3_key.txt"
	fileIDs                = "ids.json"
)

func generateKeyMaterial() (*keyMaterial, error) {
	km := &keyMaterial{}
	for _, p := range []**rsa.PrivateKey{&km.alipayAppPriv, &km.alipayPlatformPriv, &km.wechatMchPriv, &km.wechatPlatformPriv} {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		*p = k
	}
	km.ids = keyIDs{
		AlipayAppID:               "2021" + randDigits(12),
		WechatMchID:               "19" + randDigits(8),
		WechatAppID:               "wx" + strings.ToLower(randHex(8)),
		WechatSerialNo:            randHex(20),
		WechatAPIv3Key:            randAlnum(32),
		WechatPlatformPublicKeyID: "PUB_KEY_ID_01" + randDigits(30),
	}
	return km, nil
}

var (
	memKeysOnce sync.Once
	memKeys     *keyMaterial
	memKeysErr  error
)

// memoryKeyMaterial is generated once per process: RSA generation is slow
// (especially under -race) and in-memory simulators in tests have no reason
// to differ from each other.
func memoryKeyMaterial() (*keyMaterial, error) {
	memKeysOnce.Do(func() { memKeys, memKeysErr = generateKeyMaterial() })
	return memKeys, memKeysErr
}

// LoadOrCreateKeys reuses the keys in dir, or generates and writes them
// there on first use. The returned paths are absolute.
func LoadOrCreateKeys(dir string) (Keys, error) {
	km, err := loadOrCreateKeyMaterial(dir)
	if err != nil {
		return Keys{}, err
	}
	return km.keys(dir)
}

func loadOrCreateKeyMaterial(dir string) (*keyMaterial, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, err
	}
	km, err := readKeyMaterial(abs)
	if err == nil {
		return km, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("paysim: keys in %s are unreadable (delete the folder to regenerate): %w", abs, err)
	}
	km, err = generateKeyMaterial()
	if err != nil {
		return nil, err
	}
	if err := km.write(abs); err != nil {
		return nil, err
	}
	return km, nil
}

func readKeyMaterial(dir string) (*keyMaterial, error) {
	raw, err := os.ReadFile(filepath.Join(dir, fileIDs))
	if err != nil {
		return nil, err
	}
	km := &keyMaterial{}
	if err := json.Unmarshal(raw, &km.ids); err != nil {
		return nil, err
	}
	for name, p := range map[string]**rsa.PrivateKey{
		fileAlipayAppPriv: &km.alipayAppPriv, fileAlipayPlatformPriv: &km.alipayPlatformPriv,
		fileWechatMchPriv: &km.wechatMchPriv, fileWechatPlatformPriv: &km.wechatPlatformPriv,
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		k, err := parsePrivateKeyPEM(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		*p = k
	}
	// The public files are derived; rewrite them in case one was removed.
	return km, km.write(dir)
}

// write stores every key file plus ids.json. Existing files are overwritten
// with identical content.
func (km *keyMaterial) write(dir string) error {
	files := map[string][]byte{
		fileAlipayAppPriv:      privatePEM(km.alipayAppPriv),
		fileAlipayAppPub:       publicPEM(&km.alipayAppPriv.PublicKey),
		fileAlipayPlatformPriv: privatePEM(km.alipayPlatformPriv),
		fileAlipayPlatformPub:  publicPEM(&km.alipayPlatformPriv.PublicKey),
		fileWechatMchPriv:      privatePEM(km.wechatMchPriv),
		fileWechatMchPub:       publicPEM(&km.wechatMchPriv.PublicKey),
		fileWechatPlatformPriv: privatePEM(km.wechatPlatformPriv),
		fileWechatPlatformPub:  publicPEM(&km.wechatPlatformPriv.PublicKey),
		fileWechatAPIv3Key:     []byte(km.ids.WechatAPIv3Key),
	}
	ids, err := json.MarshalIndent(km.ids, "", "  ")
	if err != nil {
		return err
	}
	files[fileIDs] = append(ids, '\n')
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (km *keyMaterial) keys(dir string) (Keys, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Keys{}, err
	}
	return Keys{
		AlipayAppID:                 km.ids.AlipayAppID,
		AlipayPrivateKeyFile:        filepath.Join(abs, fileAlipayAppPriv),
		AlipayPublicKeyFile:         filepath.Join(abs, fileAlipayPlatformPub),
		AlipayAppPrivateKeyPEM:      string(privatePEM(km.alipayAppPriv)),
		AlipayPublicKeyPEM:          string(publicPEM(&km.alipayPlatformPriv.PublicKey)),
		WechatMchID:                 km.ids.WechatMchID,
		WechatAppID:                 km.ids.WechatAppID,
		WechatSerialNo:              km.ids.WechatSerialNo,
		WechatPrivateKeyFile:        filepath.Join(abs, fileWechatMchPriv),
		WechatAPIv3Key:              km.ids.WechatAPIv3Key,
		WechatPlatformPublicKeyFile: filepath.Join(abs, fileWechatPlatformPub),
		WechatPlatformPublicKeyID:   km.ids.WechatPlatformPublicKeyID,
	}, nil
}

func privatePEM(k *rsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		panic(err) // an RSA key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func publicPEM(k *rsa.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func parsePrivateKeyPEM(b []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return rk, nil
}

func parsePublicKeyPEM(b []byte) (*rsa.PublicKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("not an RSA key")
	}
	return rk, nil
}

const (
	digits = "0123456789"
	hexUp  = "0123456789ABCDEF"
	alnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

func randFrom(alphabet string, n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(alphabet)))
	for i := range b {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err)
		}
		b[i] = alphabet[v.Int64()]
	}
	return string(b)
}

func randDigits(n int) string { return randFrom(digits, n) }
func randHex(nBytes int) string {
	return randFrom(hexUp, nBytes*2)
}
func randAlnum(n int) string { return randFrom(alnum, n) }
