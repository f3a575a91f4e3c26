package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/keyledger/keyledger/api"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/internal/testkeys"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
)

// voucherEntry reads the voucher model's entry as the token endpoint does: the active
// generation as it is now, no wait, one lookup.
func voucherEntry(t *testing.T, rd *runner.Reader, clientID, kid, purposeID string) (models.VoucherEntry, bool) {
	t.Helper()
	ns, err := rd.Namespace(context.Background(), models.VoucherModel)
	if err != nil {
		t.Fatal(err)
	}
	v, ok, err := models.LookupEntry(context.Background(), rd.Store(), ns, clientID, kid, purposeID)
	if err != nil {
		t.Fatal(err)
	}
	return v, ok
}

// waitEntry waits until the voucher model reflects the answer's position and returns
// whether the entry exists then.
func waitEntry(t *testing.T, rd *runner.Reader, r resp, clientID, kid, purposeID string) (models.VoucherEntry, bool) {
	t.Helper()
	pos, err := eventstore.ParsePosition(r.header.Get(api.HeaderPosition))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := rd.At(ctx, models.VoucherModel, pos); err != nil {
		t.Fatal(err)
	}
	return voucherEntry(t, rd, clientID, kid, purposeID)
}

// TestDeletedKeyIsRefusedByTheNextRequest: DELETE of a key answers only once the voucher
// model has dropped it, so the very next read refuses it — 1,000 times in a row.
func TestDeletedKeyIsRefusedByTheNextRequest(t *testing.T) {
	var rd *runner.Reader
	e := newEnv(t, func(d *api.Deps) { rd = d.Reads })
	admin := e.tenant("acme")
	// A client's stream grows by two events a round and every command replays its stream
	// (no snapshots yet): a fresh client every 50 rounds keeps the test linear.
	const rounds, perClient = 1000, 50
	var id string
	for i := range rounds {
		if i%perClient == 0 {
			id = e.client(admin, "api", nil)
		}
		up := e.must(201, "POST", "/v1/clients/"+id+"/keys", admin, keyBody("rotating key", string(testkeys.P256PEM(t))))
		kid := up.json(t)["kid"].(string)
		if _, ok := waitEntry(t, rd, up, id, kid, ""); !ok {
			t.Fatalf("round %d: the uploaded key never reached the voucher model", i)
		}
		e.must(204, "DELETE", "/v1/clients/"+id+"/keys/"+kid, admin, nil)
		if v, ok := voucherEntry(t, rd, id, kid, ""); ok {
			t.Fatalf("round %d: key %s deleted through the API still granted by the voucher model: %+v", i, kid, v)
		}
	}
}

// TestEveryRevocationHoldsWhenTheAPIAnswers covers the other revoking commands: each is
// in force in the voucher model (the entry gone or refused) as soon as it answers.
func TestEveryRevocationHoldsWhenTheAPIAnswers(t *testing.T) {
	var rd *runner.Reader
	e := newEnv(t, func(d *api.Deps) { rd = d.Reads })
	prod, cons, esID, pid := producerConsumer(e)
	pemText, _ := rsaPEM(t, 2048)
	newClient := func() (string, string) {
		id := e.client(cons, "eservice", nil)
		up := e.must(201, "POST", "/v1/clients/"+id+"/keys", cons, keyBody("key", pemText))
		kid := up.json(t)["kid"].(string)
		link := e.must(200, "POST", "/v1/clients/"+id+"/purposes", cons, map[string]any{"purposeId": pid})
		if v, ok := waitEntry(t, rd, link, id, kid, pid); !ok || v.Refusal() != "" {
			t.Fatalf("entry before the revocation: %+v %v", v, ok)
		}
		return id, kid
	}

	// Remove the purpose from the client.
	id, kid := newClient()
	e.must(204, "DELETE", "/v1/clients/"+id+"/purposes/"+pid, cons, nil)
	if _, ok := voucherEntry(t, rd, id, kid, pid); ok {
		t.Fatal("entry still there after the purpose was removed from the client")
	}
	e.must(204, "DELETE", "/v1/clients/"+id, cons, nil)

	// Delete the client.
	id, kid = newClient()
	e.must(204, "DELETE", "/v1/clients/"+id, cons, nil)
	if _, ok := voucherEntry(t, rd, id, kid, pid); ok {
		t.Fatal("entry still there after the client was deleted")
	}

	// Suspend the e-service, then the purpose (after reactivating the e-service).
	id, kid = newClient()
	e.must(200, "POST", "/v1/eservices/"+esID+"/suspend", prod, nil)
	if v, ok := voucherEntry(t, rd, id, kid, pid); ok && v.Refusal() != models.RefuseEServiceSuspended {
		t.Fatalf("after the e-service's suspension the entry says %q", v.Refusal())
	}
	e.must(200, "POST", "/v1/eservices/"+esID+"/activate", prod, nil)
	e.must(200, "POST", "/v1/purposes/"+pid+"/suspend", prod, nil)
	if v, ok := voucherEntry(t, rd, id, kid, pid); ok && v.Refusal() != models.RefusePurposeSuspended {
		t.Fatalf("after the purpose's suspension the entry says %q", v.Refusal())
	}
	e.must(200, "POST", "/v1/purposes/"+pid+"/activate", cons, nil)
	e.must(200, "POST", "/v1/purposes/"+pid+"/archive", cons, nil)
	if v, ok := voucherEntry(t, rd, id, kid, pid); ok && v.Refusal() == "" {
		t.Fatalf("after the purpose's archival the entry still grants: %+v", v)
	}
}

// TestRevocationNotAppliedInTimeAnswers202: when the voucher model cannot reach the
// revocation within the bound, the API says so (202 with the position) instead of
// claiming it is done.
func TestRevocationNotAppliedInTimeAnswers202(t *testing.T) {
	// A reader over a generation that nobody projects: it is active but never moves.
	stuck := readmodel.NewMemory()
	ctx := context.Background()
	for _, m := range []string{models.VoucherModel, models.KeysModel, models.DirectoryModel} {
		ns := readmodel.Namespace{Model: m, Generation: "stuck"}
		if err := stuck.InitGeneration(ctx, ns); err != nil {
			t.Fatal(err)
		}
		if err := stuck.SetActive(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	e := newEnv(t, func(d *api.Deps) {
		d.Reads = runner.NewReader(stuck, d.Commands.Store(), models.All())
		d.RevocationWait = 50 * time.Millisecond
	})
	admin := e.tenant("acme")
	id := e.client(admin, "api", nil)
	pemText, _ := rsaPEM(t, 2048)
	kid := e.must(201, "POST", "/v1/clients/"+id+"/keys", admin, keyBody("key", pemText)).json(t)["kid"].(string)
	r := e.do("DELETE", "/v1/clients/"+id+"/keys/"+kid, admin, nil)
	if r.status != http.StatusAccepted {
		t.Fatalf("DELETE with a stuck voucher model: %d %s, want 202", r.status, r.body)
	}
	body := r.json(t)
	if body["code"] != api.CodeRevocationPending || body["position"] != r.header.Get(api.HeaderPosition) || body["position"] == "" {
		t.Fatalf("202 body %v (position header %q)", body, r.header.Get(api.HeaderPosition))
	}
}
