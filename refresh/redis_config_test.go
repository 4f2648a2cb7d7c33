package refresh

import (
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testcaddy"
	"github.com/tollgate/tollgate/internal/testredis"
)

// specialPassword: see testredis.SpecialPassword.
const specialPassword = testredis.SpecialPassword

// A Redis password with / # ? % @ or a space works given apart — as
// written, from {env.*} or from {file.*}, no encoding — or percent-encoded
// in the URL: logins create their sessions in that Redis.
func TestRedisPasswordGivenApartNeedsNoEncoding(t *testing.T) {
	srv := testredis.StartWithPassword(t, specialPassword)
	inspect := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: specialPassword})
	t.Cleanup(func() { _ = inspect.Close() })
	t.Setenv("TG_REDIS_PASSWORD", specialPassword)
	file := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(file, []byte(specialPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	backend := startBackend(t)
	for name, setting := range map[string]string{
		"env":         "redis://" + srv.Addr() + "/0 {\n\t\t\tpassword {env.TG_REDIS_PASSWORD}\n\t\t}",
		"file":        "redis://" + srv.Addr() + "/0 {\n\t\t\tpassword {file." + file + "}\n\t\t}",
		"quoted":      "redis://" + srv.Addr() + "/0 {\n\t\t\tpassword \"" + specialPassword + "\"\n\t\t}",
		"percent-URL": "redis://:" + url.PathEscape(specialPassword) + "@" + srv.Addr() + "/0",
	} {
		t.Run(name, func(t *testing.T) {
			port := testcaddy.FreePort(t)
			testcaddy.Start(t, "", siteBlock(port, setting, backend.hostPort(), ""))
			user := "pw-" + name
			r := login(t, "http://127.0.0.1:"+itoa(port), user)
			n, err := inspect.Exists(t.Context(), sessionKey("https://tollgate.test", user, sidOf(t, r.pair.RefreshToken))).Result()
			if err != nil || n != 1 {
				t.Fatalf("the session is not in the password Redis: %d %v", n, err)
			}
		})
	}
}

// A password Redis refuses fails the load, naming the cause and not the
// password; so does an empty variable, naming it.
func TestRedisWithAWrongOrEmptyPasswordFailsTheLoad(t *testing.T) {
	const wrong = "wrong-password-2b7c"
	srv := testredis.StartWithPassword(t, "right-password-4d1a")
	k := testKeys(t)
	t.Setenv("TG_EMPTY_PASSWORD", "")
	for setting, want := range map[string]string{
		"redis://:" + wrong + "@" + srv.Addr() + "/0":                                    "http.handlers.jwt_refresh: redis: redis redis://***@" + srv.Addr() + "/0 refused the credentials: WRONGPASS",
		"redis://" + srv.Addr() + "/0":                                                   "refused the credentials: NOAUTH",
		"redis://" + srv.Addr() + "/0 {\npassword {env.TG_EMPTY_PASSWORD}\n}":            "http.handlers.jwt_refresh: redis password: {env.TG_EMPTY_PASSWORD} is empty or unset",
		"redis://:{env.TG_EMPTY_PASSWORD}@" + srv.Addr() + "/0":                          "http.handlers.jwt_refresh: redis: {env.TG_EMPTY_PASSWORD} is empty or unset",
		"redis://:right-password-4d1a@" + srv.Addr() + "/0 {\npassword " + wrong + "\n}": "a password is given both in the URL and with password",
	} {
		err := validateCaddyfile(t, "redis "+setting+"\nsigning_key "+k.es256)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), wrong) {
			t.Errorf("redis %s: %v\nwant an error with %q and no password", setting, err, want)
		}
	}
}

// Caddy provisions a module before it validates it. A config Validate
// refuses dialed Redis first (and waited up to a second on one that did
// not answer) before it was refused; now Provision runs Validate before it
// takes anything.
func TestAConfigValidateRefusesNeverConnectsToRedis(t *testing.T) {
	srv := testredis.Start(t)
	k := testKeys(t)
	before := srv.ConnectionsReceived(t)
	err := validateCaddyfile(t, "redis "+srv.URL()+"\nsigning_key "+k.es256+"\naccess_ttl 2h\nrefresh_ttl 1h")
	if err == nil || !strings.Contains(err.Error(), "access_ttl 2h0m0s exceeds refresh_ttl 1h0m0s") {
		t.Fatalf("validate: %v", err)
	}
	if n := srv.ConnectionsReceived(t) - before; n != 0 {
		t.Fatalf("the refused config opened %d connections to Redis", n)
	}
}
