package authjwt

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// validateAuthBlock adapts one site whose authjwt has rsa1's key plus
// body, and runs caddy.Validate on it: Provision, as `caddy validate`,
// `run` and `reload` do.
func validateAuthBlock(t *testing.T, body string) error {
	t.Helper()
	pem := writePublicPEM(t, t.TempDir(), "rsa.pem", &keys(t).rsa1.PublicKey)
	out, _, err := testcaddy.Adapt(fmt.Sprintf("http://127.0.0.1:9 {\n\tauthjwt {\n\t\tkey %s\n\t\t%s\n\t}\n\trespond ok\n}\n", pem, body))
	if err != nil {
		return err
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	return caddy.Validate(&cfg)
}

// A wrong password, none, or an {env.*} that is empty in the server's
// environment (set in the shell that ran `tollgate reload`, not in the
// server's) left every revoked session accepted with only a debug line.
// The load now fails, saying why, without any part of the password.
func TestRevocationWithAWrongOrEmptyPasswordFailsTheLoad(t *testing.T) {
	const right, wrong = "right-password-7f3a", "wrong-password-9c1e"
	srv := testredis.StartWithPassword(t, right)
	t.Setenv("TG_EMPTY_PASSWORD", "")
	addr := srv.Addr()
	cases := []struct{ name, body, want string }{
		{"wrong password in the URL", "revocation redis://:" + wrong + "@" + addr + "/0",
			"revocation: redis redis://***@" + addr + "/0 refused the credentials: WRONGPASS"},
		{"wrong password given apart", "revocation redis://" + addr + "/0 {\n\t\t\tpassword " + wrong + "\n\t\t}",
			"refused the credentials: WRONGPASS"},
		{"no password", "revocation redis://" + addr + "/0", "refused the credentials: NOAUTH"},
		{"empty variable in the URL", "revocation redis://:{env.TG_EMPTY_PASSWORD}@" + addr + "/0",
			"revocation: {env.TG_EMPTY_PASSWORD} is empty or unset: set it in the environment of the running tollgate server"},
		{"empty variable given apart", "revocation redis://" + addr + "/0 {\n\t\t\tpassword {env.TG_EMPTY_PASSWORD}\n\t\t}",
			"revocation password: {env.TG_EMPTY_PASSWORD} is empty or unset"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := validateAuthBlock(t, c.body)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("validate: %v\nwant an error with %q", err, c.want)
			}
			if strings.Contains(err.Error(), wrong) {
				t.Errorf("the error holds the password: %v", err)
			}
		})
	}
	if err := validateAuthBlock(t, "revocation redis://"+addr+"/0 {\n\t\t\tpassword "+right+"\n\t\t}"); err != nil {
		t.Fatalf("the right password: %v", err)
	}
}

// specialPassword: see testredis.SpecialPassword.
const specialPassword = testredis.SpecialPassword

// A password with / # ? % @ or a space works given apart (as written, from
// {env.*}, from {file.*}) or percent-encoded in the URL; written raw in
// the URL it is refused when the config loads, without echoing any of it.
func TestRevocationPasswordWithSpecialCharacters(t *testing.T) {
	srv := testredis.StartWithPassword(t, specialPassword)
	t.Setenv("TG_REVOCATION_PASSWORD", specialPassword)
	file := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(file, []byte(specialPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	publisher := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: specialPassword})
	t.Cleanup(func() { _ = publisher.Close() })
	for name, setting := range map[string]string{
		"env":          "revocation redis://" + srv.Addr() + "/0 {\n\t\t\tpassword {env.TG_REVOCATION_PASSWORD}\n\t\t}",
		"file":         "revocation redis://" + srv.Addr() + "/0 {\n\t\t\tpassword {file." + file + "}\n\t\t}",
		"percent-URL":  "revocation redis://:" + url.PathEscape(specialPassword) + "@" + srv.Addr() + "/0",
		"quoted apart": "revocation redis://" + srv.Addr() + "/0 {\n\t\t\tpassword \"" + specialPassword + "\"\n\t\t}",
	} {
		t.Run(name, func(t *testing.T) {
			port := startAuthSite(t, setting, `respond "ok {http.auth.user.id}"`)
			sid := "pw-" + strings.ReplaceAll(name, " ", "-")
			revokeAndExpectRejection(t, port, publisher, time.Second, sid+"-1", sid+"-2")
		})
	}
	err := validateAuthBlock(t, "revocation redis://:QQ/WW#EE?RR%TT@"+srv.Addr()+"/0")
	if err == nil || !strings.Contains(err.Error(), "percent-encode") {
		t.Fatalf("a raw special password in the URL: %v", err)
	}
	for _, run := range []string{"QQ", "WW", "EE", "RR", "TT"} {
		if strings.Contains(err.Error(), run) {
			t.Errorf("the error echoes %q of the password: %v", run, err)
		}
	}
}

// When Redis starts refusing the watcher (its password changed), every
// failure is logged at warn with its cause, never the password, at most
// once per 10 s with the count of those held back.
func TestSubscriptionFailuresAreWarnedWithTheirCause(t *testing.T) {
	const first, second = "first-password-5d2b", "second-password-8e4f"
	srv := testredis.StartWithPassword(t, first)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: first})
	t.Cleanup(func() { _ = admin.Close() })
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	pem := writePublicPEM(t, t.TempDir(), "rsa.pem", &keys(t).rsa1.PublicKey)
	testcaddy.Start(t, "\tlog {\n\t\toutput file "+logFile+"\n\t\tformat json\n\t}", fmt.Sprintf(
		"http://127.0.0.1:%d {\n\tauthjwt {\n\t\tkey %s\n\t\trevocation redis://%s/0 {\n\t\t\tpassword %s\n\t\t}\n\t}\n\trespond ok\n}\n",
		testcaddy.FreePort(t), pem, srv.Addr(), first))
	warnings := func() []map[string]any {
		b, _ := os.ReadFile(logFile)
		var out []map[string]any
		for _, line := range strings.Split(string(b), "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil && e["msg"] == "revocation subscription failed; subscribing again" {
				out = append(out, e)
			}
		}
		return out
	}
	// The password changes under the running watcher; its connections
	// are dropped and every reconnection is refused.
	if err := admin.ConfigSet(t.Context(), "requirepass", second).Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(t.Context(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// The first failure is the dropped connection (EOF); the refused
	// reconnections follow, within a second each, and are held back.
	refused := func() (int, map[string]any) {
		for i, w := range warnings() {
			if strings.Contains(fmt.Sprint(w["error"]), "WRONGPASS") {
				return i, w
			}
		}
		return -1, nil
	}
	waitUntil(t, 30*time.Second, "no warning with the refusal (WRONGPASS)", func() bool { i, _ := refused(); return i >= 0 })
	i, w := refused()
	if w["level"] != "warn" || w["redis"] != "redis://"+srv.Addr()+"/0" {
		t.Errorf("the warning: %v", w)
	}
	if n, _ := w["suppressed"].(float64); i > 0 && n < 1 {
		t.Errorf("the warning after the first held back %v failures, want some (the watcher retries within a second)", w["suppressed"])
	}
	b, _ := os.ReadFile(logFile)
	for _, pw := range []string{first, second} {
		if strings.Contains(string(b), pw) {
			t.Errorf("the log holds a password")
		}
	}
}

// Caddy provisions a module before it validates it. A config Validate
// refuses started the revocation watcher (a subscription, a goroutine)
// before it was refused; now Provision runs Validate before it takes
// anything.
func TestAConfigValidateRefusesNeverConnectsToRedis(t *testing.T) {
	srv := testredis.Start(t)
	before := srv.ConnectionsReceived(t)
	err := testcaddy.ValidateHandler(t, "authjwt", `"hmac_secret":"`+strings.Repeat("s", 32)+`","preflight":"maybe","revocation":"`+srv.URL()+`"`)
	if err == nil || !strings.Contains(err.Error(), `preflight "maybe": must be pass or require`) {
		t.Fatalf("validate: %v", err)
	}
	if n := srv.ConnectionsReceived(t) - before; n != 0 {
		t.Fatalf("the refused config opened %d connections to Redis", n)
	}
}
