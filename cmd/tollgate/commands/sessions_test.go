package commands_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tollgate/tollgate/internal/testcaddy"
)

// TestSessionsRevokeEndsOneSessionThenEveryOneOfTheUser runs the command
// against a real instance: --sid ends that session only, --user alone ends
// the rest of the user's, and other users keep theirs.
func TestSessionsRevokeEndsOneSessionThenEveryOneOfTheUser(t *testing.T) {
	w := startKeyWorld(t, ok(t, "keygen", "--dir", t.TempDir()).stdout)
	first, second, other := w.login(t, "u1"), w.login(t, "u1"), w.login(t, "u2")
	sid1 := jwtPart(t, first.RefreshToken, 1)["sid"].(string)
	sid2 := jwtPart(t, second.RefreshToken, 1)["sid"].(string)

	out := ok(t, "sessions", "revoke", "--address", w.admin(), "--user", "u1", "--sid", sid1).stdout
	if out != sid1+"\n" {
		t.Fatalf("revoke --sid printed %q, want %s", out, sid1)
	}
	if r := w.refresh(t, first.RefreshToken); r.status != http.StatusBadRequest || r.Error != "invalid_grant" {
		t.Fatalf("refresh of the revoked session: %d %s", r.status, r.Error)
	}
	second = w.refresh(t, second.RefreshToken)
	if second.status != http.StatusOK {
		t.Fatalf("refresh of u1's other session: %d %s", second.status, second.Error)
	}

	// The admin address may come from the config, as with tollgate reload.
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(cfg, []byte("{\n\tadmin "+w.admin()+"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = ok(t, "sessions", "revoke", "--config", cfg, "--adapter", "caddyfile", "--user", "u1").stdout
	if !strings.Contains(out, sid2) {
		t.Fatalf("revoke --user printed %q, want %s among them", out, sid2)
	}
	if r := w.refresh(t, second.RefreshToken); r.status != http.StatusBadRequest {
		t.Fatalf("refresh after revoking every session of u1: %d", r.status)
	}
	if r := w.refresh(t, other.RefreshToken); r.status != http.StatusOK {
		t.Fatalf("u2's session was touched: %d %s", r.status, r.Error)
	}
}

// TestSessionsRevokeRefusesWithoutUserAndNamesAnUnreachableAdmin: nothing
// is sent without --user, and Redis is as it was.
func TestSessionsRevokeRefusesWithoutUserAndNamesAnUnreachableAdmin(t *testing.T) {
	w := startKeyWorld(t, ok(t, "keygen", "--dir", t.TempDir()).stdout)
	w.login(t, "u1")
	before := w.redis.Dump()
	refused(t, "--user is required", "sessions", "revoke", "--address", w.admin())
	refused(t, "--user is required", "sessions", "revoke", "--address", w.admin(), "--user", " ", "--sid", "x")
	dead := "127.0.0.1:" + strconv.Itoa(testcaddy.FreePort(t))
	refused(t, "on the admin API at "+dead, "sessions", "revoke", "--address", dead, "--user", "u1")
	if after := w.redis.Dump(); !maps.Equal(before, after) {
		t.Fatalf("Redis changed:\nbefore %v\nafter  %v", before, after)
	}
}

// TestSessionsRevokeSaysWhenNoJwtRefreshRuns: the admin API's 409 comes
// back with its code and text.
func TestSessionsRevokeSaysWhenNoJwtRefreshRuns(t *testing.T) {
	port := testcaddy.FreePort(t)
	inst := testcaddy.Start(t, "", fmt.Sprintf("http://127.0.0.1:%d {\n\trespond ok\n}\n", port))
	refused(t, `HTTP 409: {"error":"not_configured","error_description":"no jwt_refresh handler is running"}`,
		"sessions", "revoke", "--address", "127.0.0.1:"+strconv.Itoa(inst.AdminPort), "--user", "u1")
}

// TestSessionsListShowsTheSessionsToRevokeOneBySid: list prints the user's
// sessions (sid, created, last rotated, expires, ends), oldest first and
// no other user's; revoke --sid with a listed sid ends that one, and the
// list then shows the other alone. --json is the admin API's answer.
func TestSessionsListShowsTheSessionsToRevokeOneBySid(t *testing.T) {
	w := startKeyWorld(t, ok(t, "keygen", "--dir", t.TempDir()).stdout)
	first, second, other := w.login(t, "u1"), w.login(t, "u1"), w.login(t, "u2")
	sid1 := jwtPart(t, first.RefreshToken, 1)["sid"].(string)
	sid2 := jwtPart(t, second.RefreshToken, 1)["sid"].(string)
	sidOther := jwtPart(t, other.RefreshToken, 1)["sid"].(string)

	out := ok(t, "sessions", "list", "--address", w.admin(), "--user", "u1").stdout
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SID") || !strings.Contains(lines[0], "LAST ROTATED") ||
		!strings.HasPrefix(lines[1], sid1) || !strings.HasPrefix(lines[2], sid2) || strings.Contains(out, sidOther) {
		t.Fatalf("sessions list printed:\n%s\nwant a header, %s then %s", out, sid1, sid2)
	}
	if f := strings.Fields(lines[1]); len(f) != 5 || !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`).MatchString(f[1]) {
		t.Errorf("a session line: %q, want the sid and four RFC 3339 times", lines[1])
	}

	ok(t, "sessions", "revoke", "--address", w.admin(), "--user", "u1", "--sid", sid1)
	raw := ok(t, "sessions", "list", "--address", w.admin(), "--user", "u1", "--json").stdout
	var answer struct {
		User     string
		Sessions []struct{ Sid string }
	}
	if err := json.Unmarshal([]byte(raw), &answer); err != nil || answer.User != "u1" || len(answer.Sessions) != 1 || answer.Sessions[0].Sid != sid2 {
		t.Fatalf("list --json after revoking %s: %s (%v)", sid1, raw, err)
	}
	if r := ok(t, "sessions", "list", "--address", w.admin(), "--user", "nobody"); r.stdout != "" || !strings.Contains(r.stderr, "user nobody has no open session") {
		t.Errorf("a user without sessions: stdout %q stderr %q", r.stdout, r.stderr)
	}
}

// TestSessionsListRefusesWithoutUserAndPassesTheRealmErrorOn: nothing is
// asked without --user; an unknown --realm comes back with the admin
// API's code and text; Redis is as it was.
func TestSessionsListRefusesWithoutUserAndPassesTheRealmErrorOn(t *testing.T) {
	w := startKeyWorld(t, ok(t, "keygen", "--dir", t.TempDir()).stdout)
	w.login(t, "u1")
	before := w.redis.Dump()
	refused(t, "--user is required", "sessions", "list", "--address", w.admin())
	refused(t, `HTTP 400: {"error":"invalid_request","error_description":"no jwt_refresh handler has this realm`,
		"sessions", "list", "--address", w.admin(), "--user", "u1", "--realm", "nope")
	refused(t, `HTTP 400: {"error":"invalid_request","error_description":"no jwt_refresh handler has this realm`,
		"sessions", "revoke", "--address", w.admin(), "--user", "u1", "--realm", "nope")
	if after := w.redis.Dump(); !maps.Equal(before, after) {
		t.Fatalf("Redis changed:\nbefore %v\nafter  %v", before, after)
	}
}
