package redisclient

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/testredis"
)

func TestOptionsParseEveryURLForm(t *testing.T) {
	cases := []struct {
		url     string
		addrs   []string
		master  string
		db      int
		cluster bool
		pass    string
	}{
		{url: "redis://127.0.0.1:6379/2", addrs: []string{"127.0.0.1:6379"}, db: 2},
		{url: "redis://:s3cret@10.0.0.1:6380/0", addrs: []string{"10.0.0.1:6380"}, pass: "s3cret"},
		{url: "redis+cluster://a:7000,b:7001,c:7002", addrs: []string{"a:7000", "b:7001", "c:7002"}, cluster: true},
		{url: "redis+sentinel://u:p@s1:26379,s2:26379/mymaster/3", addrs: []string{"s1:26379", "s2:26379"}, master: "mymaster", db: 3, pass: "p"},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			o, err := Options(c.url)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(o.Addrs, ",") != strings.Join(c.addrs, ",") || o.MasterName != c.master ||
				o.DB != c.db || o.IsClusterMode != c.cluster || o.Password != c.pass {
				t.Errorf("got %+v", o)
			}
		})
	}
}

func TestOptionsRefuseBadURLsWithoutLeakingThePassword(t *testing.T) {
	for _, url := range []string{"", "localhost:6379", "http://x:1", "redis+cluster://", "redis+cluster://a:1/0",
		"redis+sentinel://s:1", "redis+sentinel://s:1/m/x", "redis+cluster://:hunter2@nohostport", "redis://u:hunter2@h:bad/0", "redis://:hunter2@h:6379/x"} {
		_, err := Options(url)
		if err == nil {
			t.Errorf("%q accepted", url)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error leaks the password: %v", err)
		}
	}
}

func TestClientIsSharedPerURL(t *testing.T) {
	srv := testredis.Start(t)
	a, err := Acquire(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Acquire(srv.URL())
	if a != b {
		t.Error("two acquisitions of one URL gave two clients")
	}
	if err := a.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	_ = Release(srv.URL())
	if err := b.Ping(context.Background()).Err(); err != nil {
		t.Errorf("client closed while still in use: %v", err)
	}
	_ = Release(srv.URL())
	if err := b.Ping(context.Background()).Err(); err == nil {
		t.Error("client still open after the last release")
	}
}

// A Lua script whose keys share a hash tag runs on a real three-master
// cluster: the layout every module uses.
func TestClusterRunsHashTaggedScripts(t *testing.T) {
	c := testredis.StartCluster(t, 3)
	rdb, err := Acquire(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer Release(c.URL())
	script := redis.NewScript(`redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); return redis.call('GET', KEYS[1])`)
	ctx := context.Background()
	for _, user := range []string{"alice", "bob", "carol", "dave"} {
		keys := []string{"tollgate:{u:" + user + "}:a", "tollgate:{u:" + user + "}:b"}
		got, err := script.Run(ctx, rdb, keys, user).Text()
		if err != nil || got != user {
			t.Fatalf("script on cluster for %s: %q %v", user, got, err)
		}
	}
}

func TestSentinelClientFollowsAFailover(t *testing.T) {
	ss := testredis.StartSentinel(t)
	rdb, err := Acquire(ss.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer Release(ss.URL())
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// WAIT makes the write reach the replica before it is promoted.
	if n, err := rdb.Do(ctx, "WAIT", 1, 2000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT: %d %v", n, err)
	}
	ss.Failover()
	var got string
	for i := 0; i < 100; i++ {
		if err = rdb.Set(ctx, "k2", "after", 0).Err(); err == nil {
			got, err = rdb.Get(ctx, "k").Result()
			break
		}
	}
	if err != nil || got != "before" {
		t.Fatalf("after failover: %q %v", got, err)
	}
}

func TestDurabilityOptionsAreReadAndHiddenFromGoRedis(t *testing.T) {
	url := "redis+sentinel://s1:26379/main/0?wait_replicas=2&wait_timeout=250ms"
	d, err := DurabilityOf(url)
	if err != nil || d.Replicas != 2 || d.Timeout.Milliseconds() != 250 {
		t.Fatalf("got %+v %v", d, err)
	}
	if _, err := Options(url); err != nil {
		t.Fatalf("options refused the durability query: %v", err)
	}
	if d, _ := DurabilityOf("redis://h:1/0"); d.Replicas != 0 {
		t.Errorf("durability without asking: %+v", d)
	}
	for _, bad := range []string{"redis://h:1/0?wait_replicas=x", "redis://h:1/0?wait_replicas=1&wait_timeout=-1s",
		"redis+cluster://a:1,b:2?wait_replicas=1"} {
		if _, err := Options(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// specialPassword: see testredis.SpecialPassword.
const specialPassword = testredis.SpecialPassword

var passwordRuns = []string{"QQ", "WW", "EE", "RR", "TT", "YY", "UU"}

func leaksPassword(text string) string {
	for _, run := range passwordRuns {
		if strings.Contains(text, run) {
			return run
		}
	}
	return ""
}

// A password with / # ? % @ or a space breaks the URL it is written in;
// the error says so without echoing any part of it (net/url's own errors
// quoted pieces: invalid port ":QQ" after host).
func TestURLErrorsNeverEchoAnyPartOfTheUserinfo(t *testing.T) {
	for _, url := range []string{
		"redis://:" + specialPassword + "@127.0.0.1:6379/0",
		"redis://user:" + specialPassword + "@127.0.0.1:6379/0",
		"rediss://:QQ/WW@127.0.0.1:6379/0",
		"redis://:QQ#WW@127.0.0.1:6379/0",
		"redis://:QQ?WW@127.0.0.1:6379/0",
		"redis://:QQ%WW@127.0.0.1:6379/0",
		"redis://:QQ WW@127.0.0.1:6379/0",
		"redis+sentinel://:QQ%WW@s1:26379/main/0",
		"redis+cluster://:QQ%WW@a:7000,b:7001",
	} {
		_, err := Options(url)
		if err == nil {
			t.Errorf("%q accepted", url)
			continue
		}
		if run := leaksPassword(err.Error()); run != "" {
			t.Errorf("error echoes %q of the password: %v", run, err)
		}
		if !strings.Contains(err.Error(), "percent-encode") {
			t.Errorf("error does not say how to write the password: %v", err)
		}
	}
}

// Percent-encoding works the same in every URL form.
func TestPercentEncodedPasswordWorksInEveryForm(t *testing.T) {
	enc := "QQ%2FWW%23EE%3FRR%25TT%20YY%40UU"
	for _, url := range []string{
		"redis://:" + enc + "@127.0.0.1:6379/0",
		"redis+sentinel://:" + enc + "@s1:26379,s2:26379/main/0",
		"redis+cluster://:" + enc + "@a:7000,b:7001",
	} {
		o, err := Options(url)
		if err != nil {
			t.Errorf("%s: %v", url, err)
			continue
		}
		if o.Password != specialPassword {
			t.Errorf("%s: password %q, want %q", url, o.Password, specialPassword)
		}
	}
}

// `password` beside the URL needs no encoding, takes {env.*} and
// {file.*}, and is what the client authenticates with.
func TestPasswordGivenApartNeedsNoEncoding(t *testing.T) {
	srv := testredis.StartWithPassword(t, specialPassword)
	t.Setenv("TG_RC_PASSWORD", specialPassword)
	file := filepath.Join(t.TempDir(), "redis-password")
	if err := os.WriteFile(file, []byte(specialPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, password := range []string{specialPassword, "{env.TG_RC_PASSWORD}", "{file." + file + "}"} {
		cfg, err := Resolve("redis", srv.URL(), password)
		if err != nil {
			t.Fatalf("password %q: %v", password, err)
		}
		rdb, err := cfg.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		if err := rdb.Ping(t.Context()).Err(); err != nil {
			t.Errorf("password %q: ping: %v", password, err)
		}
		if run := leaksPassword(cfg.String()); run != "" {
			t.Errorf("String() echoes %q: %s", run, cfg)
		}
		_ = cfg.Release()
	}
}

func TestResolveRefusesTwoPasswordsAndNamesAnEmptyPlaceholder(t *testing.T) {
	if _, err := Resolve("redis", "redis://:QQWW@127.0.0.1:6379/0", "EERR"); err == nil ||
		!strings.Contains(err.Error(), "both in the URL and with password") || leaksPassword(err.Error()) != "" {
		t.Errorf("two passwords: %v", err)
	}
	t.Setenv("TG_RC_EMPTY", "")
	_, err := Resolve("revocation", "redis://127.0.0.1:6379/0", "{env.TG_RC_EMPTY}")
	if err == nil || !strings.Contains(err.Error(), "revocation password: {env.TG_RC_EMPTY} is empty") {
		t.Errorf("empty password placeholder: %v", err)
	}
	_, err = Resolve("redis", "redis://:{env.TG_RC_EMPTY}@127.0.0.1:6379/0", "")
	if err == nil || !strings.Contains(err.Error(), "redis: {env.TG_RC_EMPTY} is empty") {
		t.Errorf("empty placeholder in the URL: %v", err)
	}
}

// The load-time check tells a Redis that refuses the credentials (an
// error the load must fail with) from one that does not answer (down: a
// warning, the load goes on).
func TestCheckTellsRefusedCredentialsFromARedisThatIsDown(t *testing.T) {
	srv := testredis.StartWithPassword(t, "right-password")
	for name, tc := range map[string]struct {
		url, password string
		refused       bool
	}{
		"wrong password": {srv.URL(), "wrong-password", true},
		"no password":    {srv.URL(), "", true},
		"right password": {srv.URL(), "right-password", false},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := Resolve("redis", tc.url, tc.password)
			if err != nil {
				t.Fatal(err)
			}
			rdb, _ := cfg.Acquire()
			defer cfg.Release()
			err = cfg.Check(t.Context(), rdb)
			var ae *AuthError
			if got := errors.As(err, &ae); got != tc.refused {
				t.Fatalf("Check: %v, refused %v want %v", err, got, tc.refused)
			}
			if err != nil && strings.Contains(err.Error(), "wrong-password") {
				t.Errorf("error holds the password: %v", err)
			}
		})
	}
	down := testredis.FreePort(t)
	cfg, _ := Resolve("redis", "redis://127.0.0.1:"+strconv.Itoa(down)+"/0", "pw")
	rdb, _ := cfg.Acquire()
	defer cfg.Release()
	err := cfg.Check(t.Context(), rdb)
	var ae *AuthError
	if err == nil || errors.As(err, &ae) {
		t.Fatalf("a Redis that is down: %v, want a not-reached error", err)
	}
}
