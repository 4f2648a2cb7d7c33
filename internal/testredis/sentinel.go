package testredis

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelSet is a master, one replica and one Sentinel watching them, all
// real processes on loopback: enough to exercise a failover.
type SentinelSet struct {
	t        testing.TB
	Master   *Server
	Replica  *Server
	Sentinel *Server
	Name     string
}

// StartSentinel starts the set; opts apply to the master and the replica
// (e.g. WithAOF("always")).
func StartSentinel(t testing.TB, opts ...Option) *SentinelSet {
	t.Helper()
	ss := &SentinelSet{t: t, Name: "tollgate"}
	ss.Master = Start(t, opts...)
	ss.Replica = Start(t, append(opts, WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(ss.Master.Port)))...)
	ss.Sentinel = startSentinel(t, ss.Name, ss.Master.Port)
	ss.waitReplicaSynced()
	return ss
}

// URL is the redis+sentinel:// URL tollgate's modules take for this set.
func (ss *SentinelSet) URL() string {
	return fmt.Sprintf("redis+sentinel://%s/%s/0", ss.Sentinel.Addr(), ss.Name)
}

// Failover asks the Sentinel to promote the replica and waits until it
// reports the new master.
func (ss *SentinelSet) Failover() {
	ss.t.Helper()
	sc := redis.NewSentinelClient(&redis.Options{Addr: ss.Sentinel.Addr()})
	defer sc.Close()
	ctx := context.Background()
	if err := sc.Failover(ctx, ss.Name).Err(); err != nil {
		ss.t.Fatalf("sentinel failover: %v", err)
	}
	want := strconv.Itoa(ss.Replica.Port)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		addr, err := sc.GetMasterAddrByName(ctx, ss.Name).Result()
		if err == nil && len(addr) == 2 && addr[1] == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	ss.t.Fatal("sentinel did not promote the replica in 20s")
}

// WaitReplicaOfNewMaster waits until the old master has been turned into a
// replica of the promoted one and is in sync, so writes that need a
// replica's confirmation work again.
func (ss *SentinelSet) WaitReplicaOfNewMaster() {
	ss.t.Helper()
	c := redis.NewClient(&redis.Options{Addr: ss.Master.Addr()})
	defer c.Close()
	want := "master_port:" + strconv.Itoa(ss.Replica.Port)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		info, _ := c.Info(context.Background(), "replication").Result()
		if strings.Contains(info, want) && strings.Contains(info, "master_link_status:up") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	ss.t.Fatal("the old master did not become a synced replica of the new one in 60s")
}

func (ss *SentinelSet) waitReplicaSynced() {
	c := redis.NewClient(&redis.Options{Addr: ss.Replica.Addr()})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		info, _ := c.Info(context.Background(), "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ss.t.Fatal("replica did not sync with its master in 15s")
}

// startSentinel runs redis-server in sentinel mode; a Sentinel needs a
// writable config file of its own.
func startSentinel(t testing.TB, name string, masterPort int) *Server {
	t.Helper()
	s := &Server{t: t, Dir: t.TempDir(), portPicker: FreePort}
	conf := filepath.Join(s.Dir, "sentinel.conf")
	body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 1\n"+
		"sentinel down-after-milliseconds %[1]s 1000\n"+
		"sentinel failover-timeout %[1]s 5000\n"+
		"sentinel parallel-syncs %[1]s 1\n", name, masterPort)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s.sentinelConf = conf
	var err error
	for i := 0; i < 5; i++ {
		s.Port = FreePort(t)
		if err = s.start(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("starting sentinel: %v", err)
	return nil
}
