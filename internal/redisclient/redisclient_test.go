package redisclient

import (
	"context"
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
