package testredis

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of real redis-server processes on loopback.
type Cluster struct {
	t       testing.TB
	Masters []*Server
}

// StartCluster starts n masters (at least 3) with cluster-enabled, assigns
// the slots with redis-cli --cluster create and waits until the cluster
// reports ok on every node.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatalf("redis-cli is required for cluster tests (Debian's redis-tools): %v", err)
	}
	c := &Cluster{t: t}
	addrs := make([]string, 0, n)
	for i := 0; i < n; i++ {
		o := append([]Option{withClusterPort(), WithArgs("--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")}, opts...)
		s := Start(t, o...)
		c.Masters = append(c.Masters, s)
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := c.waitOK(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// URL is the redis+cluster:// URL tollgate's modules take for this cluster.
func (c *Cluster) URL() string {
	addrs := make([]string, 0, len(c.Masters))
	for _, m := range c.Masters {
		addrs = append(addrs, m.Addr())
	}
	return "redis+cluster://" + strings.Join(addrs, ",")
}

// Client returns a cluster client for inspecting the data from a test.
func (c *Cluster) Client() *redis.ClusterClient {
	addrs := make([]string, 0, len(c.Masters))
	for _, m := range c.Masters {
		addrs = append(addrs, m.Addr())
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	c.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func (c *Cluster) waitOK(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, m := range c.Masters {
		cl := redis.NewClient(&redis.Options{Addr: m.Addr()})
		for {
			info, err := cl.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				cl.Close()
				return fmt.Errorf("cluster not ok after %s: %v %s", timeout, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
		cl.Close()
	}
	return nil
}

// withClusterPort makes Start pick a port whose cluster bus port (+10000)
// is free too.
func withClusterPort() Option {
	return func(s *Server) { s.portPicker = clusterPort }
}

func clusterPort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		p := FreePort(t)
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		l.Close()
		return p
	}
	t.Fatal("no port pair free for a cluster node")
	return 0
}
