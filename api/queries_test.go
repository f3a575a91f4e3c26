package api_test

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
)

// noAutoMin makes env send no Keyledger-Min-Position of its own.
var noAutoMin = []string{api.HeaderMinPosition, ""}

// A client created through the API is read back by the very next request that names the
// creation's position — 200 times in a row, by id and in the filtered list.
func TestReadYourWritesWithMinPosition(t *testing.T) {
	e := newEnv(t)
	admin := e.tenant("acme")
	for i := range 200 {
		name := fmt.Sprintf("Client number %03d", i)
		r := e.must(201, "POST", "/v1/clients", admin, map[string]any{"kind": "api", "name": name})
		pos := r.header.Get(api.HeaderPosition)
		id := r.json(t)["id"].(string)
		got := e.must(200, "GET", "/v1/clients/"+id, admin, nil, api.HeaderMinPosition, pos)
		if got.json(t)["name"] != name || got.header.Get("ETag") != r.header.Get("ETag") {
			t.Fatalf("iteration %d: read %s %v after creating %s", i, got.body, got.header, r.header)
		}
		if i%10 == 0 { // the parameter form, on a list
			q := url.Values{"minPosition": {pos}, "namePrefix": {name}}
			items := e.must(200, "GET", "/v1/clients?"+q.Encode(), admin, nil, noAutoMin...).json(t)["items"].([]any)
			if len(items) != 1 || items[0].(map[string]any)["id"] != id {
				t.Fatalf("iteration %d: list %v", i, items)
			}
		}
	}
}

func TestMinPositionRefusals(t *testing.T) {
	e := newEnv(t, func(d *api.Deps) { d.ReadWait = 50 * time.Millisecond })
	admin := e.tenant("acme")
	r := e.must(201, "POST", "/v1/users", admin, map[string]any{"id": "bob", "name": "Bob"})
	pos := r.header.Get(api.HeaderPosition)

	// A position the log does not hold yet: 503 with Retry-After once the bound is over.
	for _, path := range []string{"/v1/users", "/v1/users/bob", "/v1/clients", "/v1/eservices", "/v1/purposes", "/v1/tenants/acme"} {
		r := e.do("GET", path, admin, nil, api.HeaderMinPosition, "999999999")
		if r.status != 503 || r.code(t) != api.CodeReadModelBehind || r.header.Get("Retry-After") != "1" {
			t.Fatalf("GET %s far ahead: %d %s %v", path, r.status, r.body, r.header)
		}
	}
	r = e.do("GET", "/v1/producer-keys/some-kid?minPosition=999999999", admin, nil, noAutoMin...)
	if r.status != 503 || r.code(t) != api.CodeReadModelBehind {
		t.Fatalf("producer key far ahead: %d %s", r.status, r.body)
	}

	// Malformed, or two different ones: 400. The same one twice is fine.
	for _, bad := range []string{"yesterday", "-1", "1/x", "1.5"} {
		r := e.do("GET", "/v1/users/bob", admin, nil, api.HeaderMinPosition, bad)
		if r.status != 400 || r.code(t) != api.CodeInvalidMinPosition {
			t.Fatalf("header %q: %d %s", bad, r.status, r.body)
		}
		r = e.do("GET", "/v1/users?minPosition="+url.QueryEscape(bad), admin, nil, noAutoMin...)
		if r.status != 400 || r.code(t) != api.CodeInvalidMinPosition {
			t.Fatalf("parameter %q: %d %s", bad, r.status, r.body)
		}
	}
	if r := e.do("GET", "/v1/users/bob?minPosition=1", admin, nil, api.HeaderMinPosition, pos); r.status != 400 || r.code(t) != api.CodeMinPositionConflict {
		t.Fatalf("two positions: %d %s", r.status, r.body)
	}
	e.must(200, "GET", "/v1/users/bob?minPosition="+pos, admin, nil, api.HeaderMinPosition, pos)
	e.must(200, "GET", "/v1/users/bob?minPosition="+pos, admin, nil, noAutoMin...)

	// Query parameters are strict, like request bodies.
	for _, path := range []string{"/v1/users?sort=name", "/v1/users/bob?x=1", "/v1/clients?limit=2&limit=3", "/v1/clients/any/keys?cursor=x"} {
		if r := e.do("GET", path, admin, nil); r.status != 400 || r.code(t) != api.CodeUnknownQueryParam {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
	}
}

// A read model that has no generation to serve yet refuses with 503, and so does a
// server without read models.
func TestQueriesWithoutReadModel(t *testing.T) {
	building := newEnv(t, func(d *api.Deps) {
		es, err := embedded.Open(t.Context(), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = es.Close() })
		d.Reads = runner.NewReader(readmodel.NewMemory(), es, models.All())
	})
	admin := building.tenant("acme")
	r := building.do("GET", "/v1/clients", admin, nil, noAutoMin...)
	if r.status != 503 || r.code(t) != api.CodeReadModelNotReady || r.header.Get("Retry-After") != "1" {
		t.Fatalf("building read model: %d %s %v", r.status, r.body, r.header)
	}
	none := newEnv(t, func(d *api.Deps) { d.Reads = nil })
	admin = none.tenant("acme")
	if r := none.do("GET", "/v1/users", admin, nil); r.status != 503 || r.code(t) != api.CodeNotReady {
		t.Fatalf("no read models: %d %s", r.status, r.body)
	}
}

// page is one list page as answered over HTTP.
type page struct {
	ids    []string
	cursor string
}

func (e *env) page(path, token string) page {
	e.t.Helper()
	m := e.must(200, "GET", path, token, nil).json(e.t)
	var p page
	for _, it := range m["items"].([]any) {
		p.ids = append(p.ids, it.(map[string]any)["id"].(string))
	}
	if c, ok := m["nextCursor"]; ok {
		p.cursor = c.(string)
		if p.cursor == "" {
			e.t.Fatalf("%s: empty nextCursor", path)
		}
	}
	return p
}

// all reads a list page by page (limit 3) and returns the ids and the page sizes.
func (e *env) all(path, token string) ([]string, []int) {
	e.t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	var ids []string
	var sizes []int
	cursor := ""
	for range 50 {
		q := sep + "limit=3"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		p := e.page(path+q, token)
		ids, sizes = append(ids, p.ids...), append(sizes, len(p.ids))
		if p.cursor == "" {
			return ids, sizes
		}
		cursor = p.cursor
	}
	e.t.Fatalf("%s never ends", path)
	return nil, nil
}

func TestListsPaginateAndFilterOverHTTP(t *testing.T) {
	e := newEnv(t)
	prod, cons, esID, pid := producerConsumer(e)
	e.user("cons", cons, "ann", "member")
	names := []string{"golf", "Alpha", "echo", "Charlie", "bravo", "Foxtrot", "delta"}
	order := []int{1, 4, 3, 6, 2, 5, 0}
	var clients []string
	for i, n := range names {
		body := map[string]any{"kind": "api", "name": n + " client"}
		if i%2 == 0 {
			body = map[string]any{"kind": "eservice", "name": n + " client", "members": []string{"ann"}}
		}
		clients = append(clients, e.must(201, "POST", "/v1/clients", cons, body).json(t)["id"].(string))
	}
	byName := func(ids []string, keep func(i int) bool) []string {
		var out []string
		for _, i := range order {
			if keep == nil || keep(i) {
				out = append(out, ids[i])
			}
		}
		return out
	}
	ids, sizes := e.all("/v1/clients", cons)
	if !slices.Equal(ids, byName(clients, nil)) || !slices.Equal(sizes, []int{3, 3, 1}) {
		t.Fatalf("clients %v in pages %v", ids, sizes)
	}
	e.must(200, "POST", "/v1/clients/"+clients[0]+"/purposes", cons, map[string]any{"purposeId": pid})
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"kind=eservice", byName(clients, func(i int) bool { return i%2 == 0 })},
		{"kind=api", byName(clients, func(i int) bool { return i%2 == 1 })},
		{"memberUserId=ann", byName(clients, func(i int) bool { return i%2 == 0 })},
		{"memberUserId=ann&kind=api", nil},
		{"purposeId=" + pid, []string{clients[0]}},
		{"namePrefix=" + url.QueryEscape("ECHO c"), []string{clients[2]}},
		{"namePrefix=d&kind=eservice", []string{clients[6]}},
	} {
		if ids, _ := e.all("/v1/clients?"+c.query, cons); !slices.Equal(ids, c.want) {
			t.Errorf("clients?%s: %v, want %v", c.query, ids, c.want)
		}
	}

	// Cursors belong to one list and one set of filters; limits are bounded.
	first := e.page("/v1/clients?limit=3", cons)
	for _, path := range []string{"/v1/keychains", "/v1/clients?kind=api&limit=3", "/v1/users"} {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		if r := e.do("GET", path+sep+"cursor="+url.QueryEscape(first.cursor), cons, nil); r.status != 400 || r.code(t) != models.CodeInvalidCursor {
			t.Fatalf("%s with a clients cursor: %d %s", path, r.status, r.body)
		}
	}
	if r := e.do("GET", "/v1/clients?cursor=garbage", cons, nil); r.status != 400 || r.code(t) != models.CodeInvalidCursor {
		t.Fatalf("garbage cursor: %d %s", r.status, r.body)
	}
	for _, l := range []string{"0", "-3", "201", "ten"} {
		if r := e.do("GET", "/v1/clients?limit="+l, cons, nil); r.status != 400 || r.code(t) != models.CodeInvalidLimit {
			t.Fatalf("limit %s: %d %s", l, r.status, r.body)
		}
	}
	e.must(200, "GET", "/v1/clients?limit=200", cons, nil)

	// Keychains, users, e-services and purposes page and filter the same way.
	kc := e.must(201, "POST", "/v1/keychains", cons, map[string]any{"name": "Chain of Ann", "members": []string{"ann"}}).json(t)["id"].(string)
	e.must(201, "POST", "/v1/keychains", cons, map[string]any{"name": "Another chain"})
	if ids, _ := e.all("/v1/keychains?memberUserId=ann", cons); !slices.Equal(ids, []string{kc}) {
		t.Fatalf("keychains of ann: %v", ids)
	}
	if ids, _ := e.all("/v1/users?namePrefix=user", cons); !slices.Equal(ids, []string{"ann"}) {
		t.Fatalf("users named user…: %v", ids)
	}
	es2 := e.must(201, "POST", "/v1/eservices", cons, map[string]any{"name": "Consumer's own", "audience": "https://own", "voucherLifetimeSeconds": 60}).json(t)["id"].(string)
	if ids, _ := e.all("/v1/eservices", prod); !slices.Equal(ids, []string{es2, esID}) {
		t.Fatalf("catalogue: %v", ids)
	}
	if ids, _ := e.all("/v1/eservices?producer=prod", cons); !slices.Equal(ids, []string{esID}) {
		t.Fatalf("prod's e-services: %v", ids)
	}
	if ids, _ := e.all("/v1/eservices?namePrefix=consumer", prod); !slices.Equal(ids, []string{es2}) {
		t.Fatalf("e-services named consumer…: %v", ids)
	}
	if ids, _ := e.all("/v1/purposes?role=producer", prod); !slices.Equal(ids, []string{pid}) {
		t.Fatalf("prod's purposes as producer: %v", ids)
	}
	if ids, _ := e.all("/v1/purposes?role=producer", cons); len(ids) != 0 {
		t.Fatalf("cons's purposes as producer: %v", ids)
	}
	if ids, _ := e.all("/v1/purposes?titlePrefix=check", cons); !slices.Equal(ids, []string{pid}) {
		t.Fatalf("purposes titled check…: %v", ids)
	}
	if r := e.do("GET", "/v1/purposes?role=bystander", cons, nil); r.status != 400 || r.code(t) != "validation_failed" {
		t.Fatalf("unknown role: %d %s", r.status, r.body)
	}
}
