package authjwt

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// A handler after authjwt that edits the identity headers (request_header
// with a find/replace) must edit this request's copy only: the next request
// with the same token, answered from the token cache, sees the value authjwt
// verified, and concurrent requests never share a header value (run with
// -race).
func TestHeaderEditedDownstreamNeverReachesTheNextRequestOfTheSameToken(t *testing.T) {
	port := startAuthSite(t, "claim_header roles X-Roles", `request_header X-User-Id ^ tenant-a:
	request_header X-Roles ^ r:
	respond "{http.request.header.X-User-Id}|{http.request.header.X-Roles}|{http.auth.user.id}"`)
	k := keys(t)
	tok := sign(t, jwt.SigningMethodRS256, k.rsa1, "", claims())
	const want = "tenant-a:user-42|r:courier|user-42"
	const workers, perWorker = 8, 40
	var wg sync.WaitGroup
	bodies := make(chan string, workers*perWorker)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				res := do(t, port, request{path: "/", headers: bearer(tok)})
				if res.status != http.StatusOK {
					bodies <- fmt.Sprintf("status %d %s", res.status, res.body)
					continue
				}
				bodies <- res.body
			}
		}()
	}
	wg.Wait()
	close(bodies)
	bad, example := 0, ""
	for b := range bodies {
		if b != want {
			bad, example = bad+1, b
		}
	}
	if bad > 0 {
		if len(example) > 80 {
			example = example[:80] + "…"
		}
		t.Fatalf("%d of %d requests saw another request's edits, e.g. %q (want %q)", bad, workers*perWorker, example, want)
	}
}
