package runner_test

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/internal/testkeys"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
	"github.com/keyledger/keyledger/voucher"
)

// busyWorld fills the log with what every model reads: e-services, purposes (activated,
// suspended), e-service and API clients with keys uploaded and deleted, purpose links
// added and removed, a deleted client.
func busyWorld(t *testing.T) *world {
	t.Helper()
	w := newWorld(t)
	must := func(res commands.Result, err error) commands.Result {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	es := must(w.cmd.CreateEService(ctx, admin, "Registry", "https://registry.example", 600)).ID
	var pids []string
	for i := range 3 {
		pid := must(w.cmd.CreatePurpose(ctx, admin, es, fmt.Sprintf("Purpose %d", i))).ID
		must(w.cmd.ActivatePurpose(ctx, admin, pid))
		pids = append(pids, pid)
	}
	for i := range 12 {
		kind := client.KindEService
		if i%4 == 3 {
			kind = client.KindAPI
		}
		id := must(w.cmd.CreateClient(ctx, admin, commands.ClientSpec{Kind: kind, Name: fmt.Sprintf("Client %02d", i)})).ID
		var kids []string
		for j := range 3 {
			_, kid, err := w.cmd.UploadKey(ctx, admin, commands.Clients, id, commands.KeyInput{Name: fmt.Sprintf("k%d", j), Key: testkeys.P256PEM(t), Use: "sig"})
			if err != nil {
				t.Fatal(err)
			}
			kids = append(kids, kid)
		}
		if kind == client.KindEService {
			for _, pid := range pids[:1+i%3] {
				must(w.cmd.AddClientPurpose(ctx, admin, id, pid))
			}
			if i%3 == 2 {
				must(w.cmd.RemoveClientPurpose(ctx, admin, id, pids[0]))
			}
		}
		must(w.cmd.DeleteKey(ctx, admin, commands.Clients, id, kids[i%3]))
		if i == 5 {
			must(w.cmd.DeleteOwner(ctx, admin, commands.Clients, id))
		}
	}
	must(w.cmd.SuspendEService(ctx, admin, es))
	// Vouchers' audit records, for the audit model.
	aw, err := voucher.NewAuditWriter(voucher.AuditConfig{Store: w.es})
	if err != nil {
		t.Fatal(err)
	}
	defer aw.Close()
	for i := range 9 {
		rec := voucher.AuditRecord{VoucherJTI: fmt.Sprintf("v-%d", i), ClientID: fmt.Sprintf("c-%d", i%3), Tenant: "acme",
			KID: fmt.Sprintf("k-%d", i%2), VoucherIssuedAt: time.Now()}
		if _, err := aw.Write(ctx, rec, "corr"); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// TestRebuildWithABoundedCopyBuildsTheSameGeneration: a rebuild through the in-process
// copy — whole, or forgetting its values after every write and reading them back from
// the target — builds exactly what projecting every event directly builds.
func TestRebuildWithABoundedCopyBuildsTheSameGeneration(t *testing.T) {
	w := busyWorld(t)
	for _, def := range models.All() {
		t.Run(def.Model, func(t *testing.T) {
			build := func(cfg runner.RebuildConfig) (map[string][]byte, map[string][]string, runner.RebuildResult) {
				t.Helper()
				s := readmodel.NewMemory()
				ns := readmodel.Namespace{Model: def.Model, Generation: def.Version}
				res, err := runner.Rebuild(ctx, w.es, s, def, ns, cfg)
				if err != nil {
					t.Fatal(err)
				}
				v, ix := s.Snapshot(ns)
				return v, ix, res
			}
			wantV, wantIx, wantRes := build(runner.RebuildConfig{Direct: true})
			if len(wantV)+len(wantIx) == 0 || wantRes.Events == 0 {
				t.Fatalf("the direct rebuild of %s built nothing: %+v", def.Model, wantRes)
			}
			for name, cfg := range map[string]runner.RebuildConfig{
				"whole copy":    {},
				"bounded copy":  {FlushOps: 3, OverlayBytes: 1},
				"one-page copy": {ReadPage: 7, FlushOps: 50, OverlayBytes: 2000},
			} {
				v, ix, res := build(cfg)
				if res != wantRes {
					t.Errorf("%s: result %+v, direct %+v", name, res, wantRes)
				}
				if !reflect.DeepEqual(v, wantV) {
					for k := range wantV {
						if string(v[k]) != string(wantV[k]) {
							t.Errorf("%s: %s = %s, direct %s", name, k, v[k], wantV[k])
						}
					}
					for k := range v {
						if _, ok := wantV[k]; !ok {
							t.Errorf("%s: %s = %s, absent from the direct rebuild", name, k, v[k])
						}
					}
				}
				if !reflect.DeepEqual(ix, wantIx) {
					t.Errorf("%s: indexes %v, direct %v", name, ix, wantIx)
				}
			}
		})
	}
}
