package payproxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// postHuge sends size bytes of body to path over a raw connection, with a
// Content-Length or chunked, written lazily (the test never holds it), and
// returns the answer the server gave, possibly before reading it all.
func postHuge(t *testing.T, addr, path string, size int64, chunked bool, contentType string) (int, map[string]any) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n", path, addr, contentType)
	if chunked {
		head += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		head += fmt.Sprintf("Content-Length: %d\r\n\r\n", size)
	}
	go func() {
		if _, err := io.WriteString(conn, head); err != nil {
			return
		}
		chunk := []byte(strings.Repeat("a", 32<<10))
		for sent := int64(0); sent < size; sent += int64(len(chunk)) {
			var err error
			if chunked {
				_, err = fmt.Fprintf(conn, "%x\r\n%s\r\n", len(chunk), chunk)
			} else {
				_, err = conn.Write(chunk)
			}
			if err != nil {
				return // the server answered and closed: nothing more to send
			}
		}
		if chunked {
			_, _ = io.WriteString(conn, "0\r\n\r\n")
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s: no answer: %v", path, err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body)
	return resp.StatusCode, body
}

// TestBodiesOver64KiBAreRefusedWithoutBeingRead: every payproxy endpoint,
// the unauthenticated notify endpoints first, answers a body over 64 KiB
// with 413 before reading further; 100 MiB bodies (declared or chunked)
// cost no memory.
func TestBodiesOver64KiBAreRefusedWithoutBeingRead(t *testing.T) {
	e := newEnv(t)
	e.start()
	addr := strings.TrimPrefix(e.base, "http://")
	const huge = 100 << 20
	paths := []struct{ path, contentType string }{
		{"/pay/notify/wechat", "application/json"},
		{"/pay/notify/alipay", "application/x-www-form-urlencoded"},
		{"/pay/trades", "application/json"},
		{"/pay/refunds", "application/json"},
		{"/pay/trades/BIG_ORDER_1/close", "application/json"},
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, p := range paths {
		for _, chunked := range []bool{false, true} {
			status, body := postHuge(t, addr, p.path, huge, chunked, p.contentType)
			if status != http.StatusRequestEntityTooLarge || body["error"] != "request_too_large" {
				t.Errorf("%s (chunked %v): %d %v, want 413 request_too_large", p.path, chunked, status, body)
			}
		}
	}
	runtime.ReadMemStats(&after)
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 16<<20 {
		t.Fatalf("refusing %d bodies of 100 MiB allocated %d MiB", 2*len(paths), grown>>20)
	}
	// Just under the limit is read (and refused for what it says).
	status, body := postHuge(t, addr, "/pay/trades", 64<<10, false, "application/json")
	if status != http.StatusBadRequest || body["error"] != "invalid_request" {
		t.Fatalf("a 64 KiB body: %d %v", status, body)
	}
}
