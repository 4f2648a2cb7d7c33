package refresh

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

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

// listSessions asks the admin API for a user's sessions.
func listSessions(t *testing.T, admin, query string) (response, sessionList) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, admin+"/tollgate/sessions?"+query, nil)
	r := do(t, req)
	var list sessionList
	if r.status == http.StatusOK {
		if err := json.Unmarshal(r.raw, &list); err != nil {
			t.Fatalf("list answer %s: %v", r.raw, err)
		}
	}
	return r, list
}

// An operator sees a user's sessions — sid, login, last rotation, when the
// refresh token runs out, when session_max ends it — and revokes one by
// its sid without redis-cli; the list then has the others only. Other
// users' sessions are never listed, and listing writes nothing.
func TestAdminListsAUsersSessionsForRevokingOne(t *testing.T) {
	e := startEnv(t, "")
	admin := e.caddy.AdminURL()
	first := login(t, e.base, "lister").pair
	second := login(t, e.base, "lister").pair
	rotated := refreshWith(t, e.base, second.RefreshToken)
	expectStatus(t, rotated, http.StatusOK, "")
	login(t, e.base, "someone-else")

	before := e.rd.Dump()
	r, list := listSessions(t, admin, "user=lister")
	expectStatus(t, r, http.StatusOK, "")
	sameDump(t, before, e.rd.Dump())
	if list.User != "lister" || list.Realm != testRealm || len(list.Sessions) != 2 {
		t.Fatalf("list: %s", r.raw)
	}
	now := time.Now()
	s1, s2 := list.Sessions[0], list.Sessions[1]
	if s1.Sid != sidOf(t, first.RefreshToken) || s2.Sid != sidOf(t, second.RefreshToken) {
		t.Fatalf("sids %s %s, want the logins' in order: %s", s1.Sid, s2.Sid, r.raw)
	}
	for _, s := range list.Sessions {
		if s.Created.After(now) || now.Sub(s.Created) > time.Minute || s.LastRotated.Before(s.Created) ||
			!s.Expires.After(now) || s.Expires.After(s.Ends) || s.ReuseDetected {
			t.Errorf("session times out of order: %+v (now %s)", s, now)
		}
	}
	if !s1.LastRotated.Equal(s1.Created) || !s2.LastRotated.After(s2.Created) {
		t.Errorf("last_rotated: the unrotated session %+v, the rotated one %+v", s1, s2)
	}

	expectStatus(t, post(t, admin+"/tollgate/sessions/revoke", "application/json", `{"user":"lister","sid":"`+s1.Sid+`"}`), http.StatusOK, "")
	_, list = listSessions(t, admin, "user=lister")
	if len(list.Sessions) != 1 || list.Sessions[0].Sid != s2.Sid {
		t.Fatalf("after revoking %s: %+v", s1.Sid, list.Sessions)
	}
	if _, none := listSessions(t, admin, "user=nobody"); len(none.Sessions) != 0 || none.Sessions == nil {
		t.Errorf("a user without sessions: %+v, want an empty list", none)
	}
}

// Bad list requests: no user, another method, and (with several realms
// running) no realm or an unknown one — each a clear error that changes
// nothing; a realm named lists that realm's sessions only.
func TestAdminListRefusesBadRequestsAndNeedsTheRealmWhenSeveralRun(t *testing.T) {
	customer, courier, _, _, revoke, rd := realmSites(t)
	admin := strings.TrimSuffix(revoke, "/tollgate/sessions/revoke")
	c := login(t, customer, "7").pair
	login(t, courier, "7")
	before := rd.Dump()
	for query, want := range map[string]string{
		"":                  "give the user",
		"user=7":            "several realms are running",
		"user=7&realm=nope": "no jwt_refresh handler has this realm",
	} {
		r, _ := listSessions(t, admin, query)
		expectStatus(t, r, http.StatusBadRequest, "invalid_request")
		if !strings.Contains(string(r.raw), want) {
			t.Errorf("?%s: %s, want %q", query, r.raw, want)
		}
	}
	r := post(t, admin+"/tollgate/sessions", "application/json", `{"user":"7"}`)
	expectStatus(t, r, http.StatusMethodNotAllowed, "invalid_request")
	if allow := r.header.Get("Allow"); allow != http.MethodGet {
		t.Errorf("405 with Allow %q, want GET", allow)
	}
	sameDump(t, before, rd.Dump())

	r, list := listSessions(t, admin, "user=7&realm=customer")
	expectStatus(t, r, http.StatusOK, "")
	if list.Realm != "customer" || len(list.Sessions) != 1 || list.Sessions[0].Sid != sidOf(t, c.RefreshToken) {
		t.Fatalf("customer 7's sessions: %s", r.raw)
	}
}
