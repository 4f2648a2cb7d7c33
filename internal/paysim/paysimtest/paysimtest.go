// Package paysimtest serves a paysim on a test HTTP server, for the tests
// of the packages that talk to the simulated providers.
package paysimtest

import (
	"net/http/httptest"
	"testing"

	"github.com/tollgate/tollgate/internal/paysim"
)

// Start runs a paysim with cfg behind an httptest server, both closed when
// the test ends, and returns it with the server's URL.
func Start(t testing.TB, cfg paysim.Config) (*paysim.Sim, string) {
	t.Helper()
	sim, err := paysim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return sim, srv.URL
}
