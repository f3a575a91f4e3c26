package api_test

import "testing"

// Deleting a user ends their memberships everywhere in the tenant, and the keys they
// uploaded are flagged for replacement.
func TestDeletedUserLeavesMemberships(t *testing.T) {
	e := newEnv(t)
	admin := e.tenant("acme")
	sam := e.user("acme", admin, "sam", "security")
	cid := e.client(admin, "api", map[string]any{"members": []string{"sam"}})
	kc := e.must(201, "POST", "/v1/keychains", admin, map[string]any{"name": "Chain one", "members": []string{"sam"}}).json(t)["id"].(string)
	pub, _ := rsaPEM(t, 2048)
	kid := e.must(201, "POST", "/v1/clients/"+cid+"/keys", sam, keyBody("sam's", pub)).json(t)["kid"].(string)

	e.must(204, "DELETE", "/v1/users/sam", admin, nil)

	c := e.must(200, "GET", "/v1/clients/"+cid, admin, nil).json(t)
	if ms := c["members"].([]any); len(ms) != 0 {
		t.Fatalf("client members after deleting sam: %v", ms)
	}
	key := c["keys"].([]any)[0].(map[string]any)
	if key["kid"] != kid || key["uploaderRemoved"] != true {
		t.Fatalf("sam's key after deleting sam: %v", key)
	}
	if ms := e.must(200, "GET", "/v1/keychains/"+kc, admin, nil).json(t)["members"].([]any); len(ms) != 0 {
		t.Fatalf("keychain members after deleting sam: %v", ms)
	}
	// Sam's token no longer does anything.
	e.must(403, "GET", "/v1/clients", sam, nil)
}

// The Location of a created tenant answers: to the operator and to the tenant's own
// users, never to another tenant.
func TestTenantLocationAnswers(t *testing.T) {
	e := newEnv(t)
	r := e.must(201, "POST", "/v1/tenants", e.token("", "op"), map[string]any{"id": "acme", "name": "Acme",
		"admin": map[string]any{"id": "alice", "name": "Alice"}})
	loc := r.header.Get("Location")
	got := e.must(200, "GET", loc, e.token("acme", "alice"), nil).json(t)
	if got["id"] != "acme" || got["admin"].(map[string]any)["id"] != "alice" {
		t.Fatalf("tenant %v", got)
	}
	e.must(200, "GET", loc, e.token("", "op"), nil)
	other := e.tenant("other")
	e.must(404, "GET", loc, other, nil)
	e.must(404, "GET", "/v1/tenants/nope", e.token("", "op"), nil)
	if r := e.do("POST", "/v1/users", e.token("acme", "alice"), `{"id":"x","name":"X"}`, "Content-Type", "application/jsonx"); r.status != 415 {
		t.Fatalf("application/jsonx: %d", r.status)
	}
}
