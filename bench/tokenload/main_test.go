package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/perf/benchfmt"

	"github.com/keyledger/keyledger/bench/benchkey"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
	"github.com/keyledger/keyledger/voucher"
)

func TestParsePlan(t *testing.T) {
	p, err := parsePlan("rs256, ES256,RS256", "redis,embedded", "1M,1k,1000,250k", "64,16")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.algs, []string{"RS256", "ES256"}) || !slices.Equal(p.stores, []string{"redis", "embedded"}) ||
		!slices.Equal(p.keys, []int{1000, 250_000, 1_000_000}) || !slices.Equal(p.conc, []int{16, 64}) {
		t.Fatalf("plan %+v", p)
	}
	for _, bad := range [][4]string{
		{"HS256", "embedded", "1k", "16"},
		{"RS256", "memory", "1k", "16"},
		{"RS256", "embedded", "1x", "16"},
		{"RS256", "embedded", "1k", "0"},
		{"", "embedded", "1k", "16"},
		{"RS256", "embedded", "-5", "16"},
	} {
		if _, err := parsePlan(bad[0], bad[1], bad[2], bad[3]); err == nil {
			t.Errorf("parsePlan%q: no error", bad)
		}
	}
}

func TestCountLabel(t *testing.T) {
	for in, want := range map[string]string{"1000": "1k", "1k": "1k", "1M": "1M", "1000000": "1M", "250k": "250k", "1500": "1500", "2500k": "2500k", "100": "100"} {
		n, err := parseCount(in)
		if err != nil {
			t.Fatalf("parseCount(%q): %v", in, err)
		}
		if got := countLabel(n); got != want {
			t.Errorf("countLabel(parseCount(%q)) = %q, want %q", in, got, want)
		}
	}
}

func TestQuantile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for q, want := range map[float64]float64{0.5: 5, 0.95: 10, 0.99: 10, 0.1: 1, 0: 1, 1: 10} {
		if got := quantile(s, q); got != want {
			t.Errorf("quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if !math.IsNaN(quantile(nil, 0.5)) {
		t.Error("quantile of nothing is not NaN")
	}
}

// parseLines reads output lines as bench/report does: key → unit → value.
func parseLines(t *testing.T, lines []string) map[string]map[string]float64 {
	t.Helper()
	text := "pkg: github.com/keyledger/keyledger/bench/tokenload\n" + strings.Join(lines, "\n") + "\n"
	r := benchfmt.NewReader(strings.NewReader(text), "test")
	out := map[string]map[string]float64{}
	n := 0
	for r.Scan() {
		switch res := r.Result().(type) {
		case *benchfmt.Result:
			m := map[string]float64{}
			for _, v := range res.Values {
				m[v.Unit] = v.Value
			}
			out[benchkey.Of(res)] = m
			n++
		case *benchfmt.SyntaxError:
			t.Errorf("benchfmt: %v", res)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(lines) {
		t.Fatalf("%d results parsed from %d lines:\n%s", n, len(lines), text)
	}
	return out
}

// fakeResults are the results of a whole default plan, p50 = 2 ms at 1k keys and
// 2.1 ms at 1M.
func fakeResults(t *testing.T) ([]result, map[string]bound) {
	p, err := parsePlan("RS256,ES256", "embedded,redis", "1k,1M", "16,64")
	if err != nil {
		t.Fatal(err)
	}
	bounds := map[string]bound{}
	var rs []result
	for _, alg := range p.algs {
		bounds[alg] = bound{alg: alg, pathOps: 2000, pathSec: 1, cryptoOps: 2500, cryptoSec: 1}
		for _, store := range p.stores {
			for _, k := range p.keys {
				for _, c := range p.conc {
					p50 := 2.0
					if k == 1_000_000 {
						p50 = 2.1
					}
					rs = append(rs, result{scenario: scenario{alg, store, k, c}, tokens: 5000, errors: 3, elapsed: 5 * time.Second,
						latencies: []float64{1, p50, p50, 3, 9}})
				}
			}
		}
	}
	return rs, bounds
}

func TestOutputLines(t *testing.T) {
	rs, bounds := fakeResults(t)
	var lines []string
	for _, alg := range []string{"RS256", "ES256"} {
		lines = append(lines, boundLines(bounds[alg])...)
	}
	for _, r := range rs {
		lines = append(lines, resultLine(r, bounds[r.alg]))
	}
	growth := growthLines(rs)
	if len(growth) != 8 { // 2 algs × 2 stores × 2 concurrencies, at 1M
		t.Fatalf("%d growth lines: %q", len(growth), growth)
	}
	lines = append(lines, growth...)
	got := parseLines(t, lines)

	b := got["tokenload.BenchmarkCryptoBound/alg=RS256"]
	if b["tokens/s"] != 2000 || b["sec/op"] != 0.0005 { // benchfmt reads ns/op as sec/op
		t.Errorf("bound line: %v", b)
	}
	if c := got["tokenload.BenchmarkCryptoOnly/alg=ES256"]; c["tokens/s"] != 2500 {
		t.Errorf("crypto-only line: %v", c)
	}
	r := got["tokenload.BenchmarkTokenLoad/alg=RS256/store=embedded/keys=1k/c=16"]
	want := map[string]float64{"sec/op": 1e-3, "tokens/s": 1000, "p50-ms": 2, "p95-ms": 9, "p99-ms": 9, "errors": 3,
		"bound-fraction": 0.5, "crypto-fraction": 0.4}
	for unit, v := range want {
		if math.Abs(r[unit]-v) > 1e-9 {
			t.Errorf("scenario line %s = %v, want %v (%v)", unit, r[unit], v, r)
		}
	}
	g := got["tokenload.BenchmarkTokenLoadKeyGrowth/alg=ES256/store=redis/keys=1k-1M/c=16"]
	if math.Abs(g["p50-growth-%"]-5) > 1e-9 {
		t.Errorf("growth line: %v, want 5 p50-growth-%%", g)
	}
}

// Every issue-5 target of bench/targets.tsv names a benchmark and unit that a default run
// prints.
func TestTargetsNameOutput(t *testing.T) {
	rs, bounds := fakeResults(t)
	var lines []string
	for _, r := range rs {
		lines = append(lines, resultLine(r, bounds[r.alg]))
	}
	lines = append(lines, growthLines(rs)...)
	got := parseLines(t, lines)
	f, err := os.Open("../targets.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 6 || !strings.HasPrefix(cols[1], "tokenload.") {
			continue
		}
		n++
		if _, ok := got[cols[1]][cols[2]]; !ok {
			t.Errorf("target %q %q: no such benchmark and unit in the output", cols[1], cols[2])
		}
	}
	if n != 20 {
		t.Errorf("%d tokenload targets, want 20 (fraction and p99 per algorithm, store and key count; growth per algorithm and store)", n)
	}
}

// testKeys are two RSA client keys, made once.
var testKeys = sync.OnceValues(func() ([]clientKey, error) {
	var out []clientKey
	for range 2 {
		priv, err := rsa.GenerateKey(rand.Reader, clientKeyBits)
		if err != nil {
			return nil, err
		}
		k, err := newClientKey(priv)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
})

func testWorld(t *testing.T) (*world, []loadKey) {
	t.Helper()
	ks, err := testKeys()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{ProducerTenant: producerTenant, ConsumerTenant: consumerTenant, EServiceID: "6f1c0e1e-0d9a-4f4e-9a51-3c1f1f9e0a01",
		EServiceAudience: benchAudience, VoucherLifetime: voucherLifetime, PurposeID: "a7c3c1f5-6a2b-4d3e-9f10-11aa22bb33cc",
		Clients: []worldClient{{ID: "0b7e7d58-5f0c-4d35-8a3e-0f6bb1a5e2c2", KIDs: []string{ks[0].kid}}, {ID: "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d", KIDs: []string{ks[1].kid}}}}
	lks, err := w.loadKeys(ks)
	if err != nil {
		t.Fatal(err)
	}
	return w, lks
}

func quiet(string, ...any) {}

// The pre-signed assertions pass every check of the real voucher.Verifier, each once,
// and the Issuer signs their vouchers: the load sends what the server must accept.
func TestAssertionsVerify(t *testing.T) {
	const issuer = "http://127.0.0.1:8123"
	w, lks := testWorld(t)
	p := newPool(lks, issuer, w.PurposeID, 100)
	if err := p.ensure(6, quiet); err != nil {
		t.Fatal(err)
	}
	bw := newBoundWorld(w, lks, issuer, issuer)
	v, err := voucher.NewVerifier(voucher.Config{Audience: issuer, Replay: voucher.NewMemoryReplayCache(0, nil),
		Entries: voucher.EntriesFunc(func(_ context.Context, c, kid, pid string) (models.VoucherEntry, bool, error) {
			e, ok := bw.entries[models.EntryKey(c, kid, pid)]
			return e, ok, nil
		})})
	if err != nil {
		t.Fatal(err)
	}
	s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: t.TempDir(), Algorithm: voucher.AlgES256})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := voucher.NewIssuer(voucher.IssuerConfig{Issuer: issuer, APIAudience: issuer + "/v1", Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seen := map[string]bool{}
	for i := range 6 {
		it, ok := p.take()
		if !ok {
			t.Fatal("pool ran out")
		}
		if it.key != i%2 || it.clientID != lks[i%2].clientID {
			t.Errorf("assertion %d: key %d of client %s, want round-robin", i, it.key, it.clientID)
		}
		req, err := voucher.ParseTokenRequest(formContentType, it.body)
		if err != nil {
			t.Fatalf("assertion %d: the form does not parse: %v", i, err)
		}
		if req.ClientAssertion != it.assertion() || req.ClientID != it.clientID {
			t.Fatalf("assertion %d: the form carries %+v", i, req)
		}
		a, err := v.Verify(ctx, req)
		if err != nil {
			t.Fatalf("assertion %d refused: %v", i, err)
		}
		if seen[a.JTI] {
			t.Errorf("assertion %d repeats jti %s", i, a.JTI)
		}
		seen[a.JTI] = true
		if _, err := iss.Issue(a); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, req); err == nil {
			t.Errorf("assertion %d accepted twice", i)
		}
	}
	if _, ok := p.take(); ok {
		t.Error("the pool handed out more than it holds")
	}
	if err := p.reset(quiet); err != nil || p.left() != 6 {
		t.Errorf("reset: %v, %d left", err, p.left())
	}

	// An assertion too old for the next server is signed again, with a fresh jti.
	p.items[1].iat = time.Now().Add(-assertionMaxAge - time.Minute).Unix()
	before, kept := p.items[1].assertion(), p.items[2].assertion()
	if err := p.reset(quiet); err != nil {
		t.Fatal(err)
	}
	if p.items[1].assertion() == before || time.Since(time.Unix(p.items[1].iat, 0)) > time.Minute || p.items[1].key != 1 {
		t.Errorf("the stale assertion was not signed again: %+v", p.items[1])
	}
	if p.items[2].assertion() != kept {
		t.Error("a fresh assertion was signed again")
	}
	req, err := voucher.ParseTokenRequest(formContentType, p.items[1].body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, req); err != nil {
		t.Errorf("the re-signed assertion is refused: %v", err)
	}
}

// The bound runs the real token path on the pool and the bare crypto, and reports both.
func TestMeasureBound(t *testing.T) {
	const issuer = "http://127.0.0.1:8123"
	w, lks := testWorld(t)
	p := newPool(lks, issuer, w.PurposeID, 100)
	if err := p.ensure(4, quiet); err != nil {
		t.Fatal(err)
	}
	b, err := measureBound(context.Background(), algES256, newBoundWorld(w, lks, issuer, issuer), p, 200*time.Millisecond, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b.pathOps <= 4 || b.cryptoOps < 1 || b.pathRate() <= 0 || b.cryptoRate() <= 0 {
		t.Fatalf("bound %+v: want more ops than assertions (fresh verifiers per round)", b)
	}
}

// fakeServer is a token endpoint answering as told.
func fakeServer(t *testing.T, handler http.HandlerFunc) *driver {
	t.Helper()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	d := newDriver(srv.URL, 4)
	t.Cleanup(d.close)
	return d
}

func TestProbe(t *testing.T) {
	const issuer = "http://127.0.0.1:8123"
	w, lks := testWorld(t)
	p := newPool(lks, issuer, w.PurposeID, 100)
	if err := p.ensure(20, quiet); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	want := voucherExpectation{alg: algES256, issuer: issuer, audience: w.EServiceAudience, purposeID: w.PurposeID, lifetime: w.VoucherLifetime}

	t.Run("no endpoint", func(t *testing.T) {
		d := fakeServer(t, func(rw http.ResponseWriter, _ *http.Request) { http.NotFound(rw, nil) })
		if err := d.probe(ctx, p, want); !errors.Is(err, errNoTokenEndpoint) {
			t.Fatalf("probe of a 404: %v", err)
		}
	})
	t.Run("refusal", func(t *testing.T) {
		d := fakeServer(t, func(rw http.ResponseWriter, _ *http.Request) {
			rw.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(rw, `{"error":"invalid_client","error_description":"jti already used"}`)
		})
		err := d.probe(ctx, p, want)
		if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "jti already used") {
			t.Fatalf("probe of a 400: %v", err)
		}
	})

	// A real voucher, signed by a voucher.Signer and published in its JWKS.
	s, err := voucher.OpenSigner(voucher.SignerConfig{Dir: t.TempDir(), Algorithm: voucher.AlgES256})
	if err != nil {
		t.Fatal(err)
	}
	bw := newBoundWorld(w, lks, issuer, issuer)
	iss, err := voucher.NewIssuer(voucher.IssuerConfig{Issuer: issuer, APIAudience: issuer + "/v1", Signer: s})
	if err != nil {
		t.Fatal(err)
	}
	// tokenServer is a token endpoint with its own replay cache, as a fresh server has.
	tokenServer := func(mangle func(token string) string) http.HandlerFunc {
		v, err := voucher.NewVerifier(voucher.Config{Audience: issuer, Replay: voucher.NewMemoryReplayCache(0, nil),
			Entries: voucher.EntriesFunc(func(_ context.Context, c, kid, pid string) (models.VoucherEntry, bool, error) {
				e, ok := bw.entries[models.EntryKey(c, kid, pid)]
				return e, ok, nil
			})})
		if err != nil {
			t.Fatal(err)
		}
		return func(rw http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/.well-known/jwks.json" {
				_, _ = rw.Write(s.JWKS())
				return
			}
			body, _ := io.ReadAll(r.Body)
			req, err := voucher.ParseTokenRequest(r.Header.Get("Content-Type"), body)
			if err == nil {
				var a voucher.Assertion
				if a, err = v.Verify(r.Context(), req); err == nil {
					var vch voucher.Voucher
					if vch, err = iss.Issue(a); err == nil {
						_ = json.NewEncoder(rw).Encode(map[string]any{"access_token": mangle(vch.Token), "token_type": "Bearer", "expires_in": vch.ExpiresIn})
						return
					}
				}
			}
			rw.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(rw, `{"error":"invalid_client","error_description":%q,"correlation_id":"%d"}`, err.Error(), time.Now().UnixNano())
		}
	}
	t.Run("voucher", func(t *testing.T) {
		d := fakeServer(t, tokenServer(func(s string) string { return s }))
		if err := d.probe(ctx, p, want); err != nil {
			t.Fatalf("probe of a good voucher: %v", err)
		}
		wrongAlg := want
		wrongAlg.alg = algRS256
		if err := d.probe(ctx, p, wrongAlg); !errors.Is(err, errVoucherAlg) {
			t.Fatalf("an ES256 voucher probed as RS256: %v, want errVoucherAlg", err)
		}
	})
	t.Run("bad signature", func(t *testing.T) {
		d := fakeServer(t, tokenServer(func(s string) string {
			i := strings.LastIndexByte(s, '.')
			return s[:i+1] + strings.Repeat("A", len(s)-i-1)
		}))
		if err := d.probe(ctx, p, want); err == nil || !strings.Contains(err.Error(), "signature") {
			t.Fatalf("probe of a voucher with a bad signature: %v", err)
		}
	})
	t.Run("load", func(t *testing.T) {
		p.next.Store(0) // a fresh server: the pool starts over
		d := fakeServer(t, tokenServer(func(s string) string { return s }))
		var errs errorSamples
		ph := d.run(ctx, p, 4, 5*time.Second, &errs)
		if !ph.exhausted || ph.tokens != 20 || ph.errors != 0 || len(ph.latencies) != 20 {
			t.Fatalf("run over 20 assertions: %+v, errors:\n%s", ph, errs.String())
		}
		// The same assertions again: every one a replay, each error counted once, one
		// sample for all (the correlation ids differ).
		p.next.Store(0)
		ph = d.run(ctx, p, 4, 5*time.Second, &errs)
		if ph.tokens != 0 || ph.errors != 20 {
			t.Fatalf("replayed run: %+v", ph)
		}
		if s := errs.String(); strings.Count(s, "\n") != 1 || !strings.Contains(s, "20 × 400 invalid_client") {
			t.Fatalf("error samples:\n%s", s)
		}
	})
}

// The filler's events are what the projections expect: a voucher model rebuilt from the
// base world plus the filler holds an entry for each filler key (on its purpose for an
// e-service client), and every kid is reserved.
func TestSeedFiller(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	es, err := embedded.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := commands.New(es, commands.Config{}, nil, nil)
	op := commands.Meta{Actor: domain.Actor{ID: "operator", Kind: eventstore.ActorOperator, Operator: true}, CorrelationID: "c1"}
	prod := commands.Meta{Actor: domain.Actor{ID: producerAdmin, Kind: eventstore.ActorUser, Tenant: producerTenant, Roles: domain.Roles{domain.RoleAdmin}}, CorrelationID: "c2"}
	cons := commands.Meta{Actor: domain.Actor{ID: consumerAdmin, Kind: eventstore.ActorUser, Tenant: consumerTenant, Roles: domain.Roles{domain.RoleAdmin}}, CorrelationID: "c3"}
	for _, tn := range [][2]string{{producerTenant, producerAdmin}, {consumerTenant, consumerAdmin}} {
		if _, err := cmd.CreateTenant(ctx, op, tn[0], "Tenant "+tn[0], tn[1], "Admin"); err != nil {
			t.Fatal(err)
		}
	}
	e, err := cmd.CreateEService(ctx, prod, "Bench e-service", benchAudience, voucherLifetime)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := cmd.CreatePurpose(ctx, cons, e.ID, "Bench token load")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.ActivatePurpose(ctx, prod, pr.ID); err != nil {
		t.Fatal(err)
	}
	if err := es.Close(); err != nil {
		t.Fatal(err)
	}
	w := &world{ProducerTenant: producerTenant, ConsumerTenant: consumerTenant, EServiceID: e.ID, EServiceAudience: benchAudience,
		VoucherLifetime: voucherLifetime, PurposeID: pr.ID}

	const n = 600
	st, err := seedFiller(ctx, dir, w, n, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if st.keys != n || st.clients < n/fillerMaxKeys || len(st.sample) == 0 {
		t.Fatalf("stats %+v", st)
	}

	es, err = embedded.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	mem := readmodel.NewMemory()
	ns := readmodel.Namespace{Model: models.VoucherModel, Generation: runner.NewGeneration(models.Voucher, time.Now())}
	if _, err := runner.Rebuild(ctx, es, mem, models.Voucher, ns, runner.RebuildConfig{Direct: true}); err != nil {
		t.Fatalf("the voucher model does not build from the filler: %v", err)
	}
	apis := 0
	for _, c := range st.sample {
		pid := c.purposeID
		if pid == "" {
			apis++
		}
		for _, kid := range c.kids {
			got, found, err := models.LookupEntry(ctx, mem, ns, c.id, kid, pid)
			if err != nil || !found {
				t.Fatalf("entry %s/%s/%s: found %v, %v", c.id, kid, pid, found, err)
			}
			if got.Refusal() != "" || got.Use != "sig" || got.Alg != "ES256" || !strings.Contains(got.PEM, "PUBLIC KEY") {
				t.Errorf("entry %s/%s/%s: %+v (refusal %q)", c.id, kid, pid, got, got.Refusal())
			}
			if pid != "" && (got.Audience != benchAudience || got.EServiceID != e.ID) {
				t.Errorf("entry %s/%s/%s: audience %q of e-service %q", c.id, kid, pid, got.Audience, got.EServiceID)
			}
			res, err := es.ReadStream(ctx, "kid-"+kid, eventstore.Forwards, 0, 10)
			if err != nil || len(res) != 1 || !bytes.Contains(res[0].Data, []byte(`"client:`+c.id+`"`)) {
				t.Errorf("reservation of %s: %v %v", kid, res, err)
			}
		}
	}
	if apis == 0 || apis == len(st.sample) {
		t.Errorf("%d API clients among %d sampled: want both kinds", apis, len(st.sample))
	}
}
