package refresh

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/tollgate/tollgate/internal/revocation"
)

func TestAdminRevokeEndsOneOrAllSessionsOfAUser(t *testing.T) {
	e := startEnv(t, "")
	revoke := e.caddy.AdminURL() + "/tollgate/sessions/revoke"
	a1 := login(t, e.base, "sus").pair
	a2 := login(t, e.base, "sus").pair
	a3 := login(t, e.base, "sus").pair
	other := login(t, e.base, "fine").pair

	r := post(t, revoke, "application/json", `{"user":"sus","sid":"`+sidOf(t, a1.RefreshToken)+`"}`)
	expectStatus(t, r, http.StatusOK, "")
	expectStatus(t, refreshWith(t, e.base, a1.RefreshToken), http.StatusBadRequest, "invalid_grant")
	expectStatus(t, refreshWith(t, e.base, a2.RefreshToken), http.StatusOK, "")

	r = post(t, revoke, "application/json", `{"user":"sus"}`)
	expectStatus(t, r, http.StatusOK, "")
	var body struct{ Revoked []string }
	if err := json.Unmarshal(r.raw, &body); err != nil || len(body.Revoked) != 2 {
		t.Fatalf("answer %s", r.raw)
	}
	expectStatus(t, refreshWith(t, e.base, a3.RefreshToken), http.StatusBadRequest, "invalid_grant")
	expectStatus(t, refreshWith(t, e.base, other.RefreshToken), http.StatusOK, "")
	for _, sid := range []string{sidOf(t, a1.RefreshToken), sidOf(t, a3.RefreshToken)} {
		if _, err := e.rd.Client().ZScore(t.Context(), "tollgate:revoked", revocation.Member(testRealm, sid)).Result(); err != nil {
			t.Fatalf("sid %s not published as revoked", sid)
		}
	}
}

func TestAdminRevokeRejectsBadBodies(t *testing.T) {
	e := startEnv(t, "")
	revoke := e.caddy.AdminURL() + "/tollgate/sessions/revoke"
	before := e.rd.Dump()
	for _, body := range []string{``, `{}`, `{"user":""}`, `{"usr":"x"}`, `[1]`} {
		expectStatus(t, post(t, revoke, "application/json", body), http.StatusBadRequest, "invalid_request")
	}
	req, _ := http.NewRequest(http.MethodGet, revoke, nil)
	expectStatus(t, do(t, req), http.StatusMethodNotAllowed, "")
	sameDump(t, before, e.rd.Dump())
}
