// Command backend stands in for the delivery platform's unchanged services
// in `make demo`: a login route that answers with X-Auth-Subject, an API
// route that echoes the identity it received, an order service that says
// what an order costs, and a webhook receiver that verifies and prints the
// events payproxy forwards.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to listen on")
	genkey := flag.String("genkey", "", "write a fresh ES256 key pair (jwt-signing.pem, jwt-public.pem) into this folder and exit")
	flag.Parse()
	if *genkey != "" {
		if err := writeKeyPair(*genkey); err != nil {
			log.Fatal(err)
		}
		return
	}
	b := &backend{secret: os.Getenv("WEBHOOK_SECRET")}
	log.SetFlags(0)
	log.SetPrefix("  backend | ")
	log.Fatal(http.ListenAndServe(*listen, b.routes()))
}

type backend struct {
	secret string
	mu     sync.Mutex
	events []json.RawMessage
}

func (b *backend) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /customer/login", b.login("customer"))
	mux.HandleFunc("POST /courier/login", b.login("courier"))
	mux.HandleFunc("/api/", b.echo)
	mux.HandleFunc("GET /orders/{order_no}", b.order)
	mux.HandleFunc("POST /webhooks/tollgate", b.webhook)
	mux.HandleFunc("GET /webhooks/received", b.received)
	return mux
}

// login accepts any {"phone": "..."} and names the user after it, as the
// seed's WeChat login does after resolving the code to a member.
func (b *backend) login(role string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Phone string `json:"phone"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil || in.Phone == "" {
			http.Error(w, `{"msg":"phone required"}`, http.StatusBadRequest)
			return
		}
		id := "10" + strings.TrimLeft(in.Phone[max(0, len(in.Phone)-6):], "0")
		claims, _ := json.Marshal(map[string]any{"roles": []string{role}})
		w.Header().Set("X-Auth-Subject", id)
		w.Header().Set("X-Auth-Claims", string(claims))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "phone": in.Phone, "role": role})
	}
}

// echo shows which identity headers reached the backend.
func (b *backend) echo(w http.ResponseWriter, r *http.Request) {
	seen := map[string]string{"path": r.URL.Path}
	for name := range r.Header {
		if strings.HasPrefix(name, "X-User") || strings.HasPrefix(name, "X-Auth") {
			seen[name] = r.Header.Get(name)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(seen)
}

// order is the order service payproxy asks for the amount: the client never
// chooses what it pays.
func (b *backend) order(w http.ResponseWriter, r *http.Request) {
	no := r.PathValue("order_no")
	if !strings.HasPrefix(no, "SL") {
		http.Error(w, `{"msg":"no such order"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"order_no": no, "amount_fen": 2350, "subject": "sl-express freight " + no})
}

// webhook verifies X-Tollgate-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, t.body)>.
func (b *backend) webhook(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	if err := verify(b.secret, r.Header.Get("X-Tollgate-Signature"), body, time.Now()); err != nil {
		log.Printf("✗ rejected webhook: %v", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	b.mu.Lock()
	b.events = append(b.events, json.RawMessage(body))
	b.mu.Unlock()
	log.Printf("✓ verified event %s", body)
	w.WriteHeader(http.StatusNoContent)
}

func (b *backend) received(w http.ResponseWriter, _ *http.Request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(b.events)
}

func verify(secret, header string, body []byte, now time.Time) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return fmt.Errorf("malformed signature header")
	}
	if d := now.Sub(time.Unix(t, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("stale signature timestamp")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return fmt.Errorf("bad signature")
	}
	return nil
}

// writeKeyPair makes the demo's JWT keys: jwt_refresh signs with the private
// half, authjwt verifies with the public half.
func writeKeyPair(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	priv, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "jwt-signing.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "jwt-public.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644)
}
