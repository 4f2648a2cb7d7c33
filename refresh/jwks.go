package refresh

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"sort"

	"github.com/tollgate/tollgate/internal/httpjson"
)

// jwk is one public key of the JWK Set (RFC 7517, RFC 7518 §6, RFC 8037).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
}

// marshalJWKS renders the public halves of every signing key, the signing
// one first, once at provisioning.
func marshalJWKS(ks *keySet) ([]byte, error) {
	keys := []jwk{}
	kids := make([]string, 0, len(ks.byKid))
	for kid := range ks.byKid {
		if kid != ks.signer.kid {
			kids = append(kids, kid)
		}
	}
	sort.Strings(kids)
	kids = append([]string{ks.signer.kid}, kids...)
	for _, kid := range kids {
		k := ks.byKid[kid]
		j := jwk{Kid: kid, Use: "sig", Alg: k.method.Alg()}
		switch pub := k.pub.(type) {
		case *rsa.PublicKey:
			j.Kty, j.N, j.E = "RSA", b64(pub.N.Bytes()), b64(big.NewInt(int64(pub.E)).Bytes())
		case *ecdsa.PublicKey:
			j.Kty, j.Crv = "EC", pub.Curve.Params().Name
			j.X, j.Y = ecCoords(pub)
		case ed25519.PublicKey:
			j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64(pub)
		default:
			return nil, fmt.Errorf("jwks: unsupported key type %T", k.pub)
		}
		keys = append(keys, j)
	}
	return json.Marshal(map[string][]jwk{"keys": keys})
}

// serveJWKS answers GET/HEAD with the JWK Set; verifiers may cache it for a
// few minutes (a new key is listed before it starts signing).
func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return httpjson.Token.Error(w, http.StatusMethodNotAllowed, "invalid_request", "use GET")
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(h.jwks)
	}
	return nil
}
