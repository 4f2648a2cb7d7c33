package main

import (
	"fmt"
	"time"
)

// authSteps walks authjwt and jwt_refresh on the customer site.
func (d *demo) authSteps() {
	fmt.Println("── Authentication at the edge (authjwt, jwt_refresh) ──")
	var access, refresh string
	var pair1Refresh string

	d.step("A call without a token is refused", func() error {
		e := d.do("GET", d.customer+"/api/profile", nil, nil)
		return want(e.status == 401, "want 401, got %d", e.status)
	})
	d.step("Login through the unchanged backend returns the token pair", func() error {
		e := d.do("POST", d.customer+"/customer/login", nil, map[string]string{"phone": "13800138000"})
		m := e.json()
		access, refresh = str(m, "access_token"), str(m, "refresh_token")
		return want(e.status == 200 && access != "" && refresh != "" && m["user"] != nil,
			"want 200 with access_token, refresh_token and user, got %d", e.status)
	})
	d.step("The access token reaches the backend as that user", func() error {
		e := d.do("GET", d.customer+"/api/profile", map[string]string{"Authorization": "Bearer " + access}, nil)
		return want(e.status == 200 && str(e.json(), "X-User-Id") == "10138000",
			"want 200 and X-User-Id 10138000 at the backend, got %d %s", e.status, e.body)
	})
	d.step("A spoofed X-User-Id is stripped before the backend sees it", func() error {
		e := d.do("GET", d.customer+"/api/profile",
			map[string]string{"Authorization": "Bearer " + access, "X-User-Id": "1"}, nil)
		return want(e.status == 200 && str(e.json(), "X-User-Id") == "10138000",
			"the backend saw %q", str(e.json(), "X-User-Id"))
	})
	d.step("Refresh rotates the pair", func() error {
		pair1Refresh = refresh
		e := d.do("POST", d.customer+"/auth/refresh", map[string]string{"Refresh-Token": refresh}, nil)
		m := e.json()
		access, refresh = str(m, "access_token"), str(m, "refresh_token")
		return want(e.status == 200 && refresh != "" && refresh != pair1Refresh,
			"want 200 and a new refresh token, got %d", e.status)
	})
	d.step(fmt.Sprintf("Replaying the old refresh token after the %s grace window revokes the session", d.grace), func() error {
		time.Sleep(d.grace + 1100*time.Millisecond)
		e := d.do("POST", d.customer+"/auth/refresh", map[string]string{"Refresh-Token": pair1Refresh}, nil)
		if e.status != 400 || str(e.json(), "error") != "invalid_grant" {
			return fmt.Errorf("want 400 invalid_grant, got %d %s", e.status, e.body)
		}
		e = d.do("POST", d.customer+"/auth/refresh", map[string]string{"Refresh-Token": refresh}, nil)
		return want(e.status == 400, "the current refresh token of the revoked session still works: %d", e.status)
	})
	d.step("…and the session's access token stops working", func() error {
		var status int
		for i := 0; i < 20; i++ {
			e := d.do("GET", d.customer+"/api/profile", map[string]string{"Authorization": "Bearer " + access}, nil)
			if status = e.status; status == 401 {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("want 401, got %d", status)
	})
}
