package runner_test

// Benchmarks of issue 4 (`make bench`; they never run in `make test`):
//
//   - BenchmarkProjectionLag500: command acknowledged → read model updated, at 500
//     commands/s, embedded store and Redis on loopback, every model of models.All()
//     projected by a Runner under its Redis lease (fenced writes), as in production;
//     measured with one Reader.At per command, as the API's callers wait.
//   - BenchmarkProjectionLag500Applied: the same, measured from the Runner's own
//     statuses: the projection pipeline without the waiting callers.
//   - BenchmarkRebuildVoucher1M: runner.Rebuild of the voucher model into Redis from a
//     log of 1,000,000 events of its streams.
//
// Each iteration is one fixed workload that takes seconds, so the default -benchtime
// runs it once per -count: go test -run '^$' -bench . -count 5 ./projections/runner/

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/keyledger/keyledger/commands"
	"github.com/keyledger/keyledger/domain"
	"github.com/keyledger/keyledger/domain/client"
	"github.com/keyledger/keyledger/domain/eservice"
	"github.com/keyledger/keyledger/domain/keyring"
	"github.com/keyledger/keyledger/domain/keys"
	"github.com/keyledger/keyledger/domain/purpose"
	"github.com/keyledger/keyledger/eventstore"
	"github.com/keyledger/keyledger/eventstore/embedded"
	"github.com/keyledger/keyledger/internal/redistest"
	"github.com/keyledger/keyledger/internal/testkeys"
	"github.com/keyledger/keyledger/projections/models"
	"github.com/keyledger/keyledger/projections/readmodel"
	"github.com/keyledger/keyledger/projections/runner"
)

// ---------------------------------------------------------------------------------------
// Projection lag at 500 commands/s.

const (
	lagRate     = 500  // commands per second, paced by schedule
	lagWarmup   = 250  // commands issued at the pace before measuring
	lagCommands = 2500 // commands measured per iteration
	lagIssuers  = 16   // concurrent issuers: a command may take longer than the 2 ms interval
	// lagClients and lagAPIClients are each issuer's clients at the start (e-service and
	// API clients); lagEServices and lagPurposes the catalogue the clients link to.
	lagClients    = 4
	lagAPIClients = 2
	lagEServices  = 10
	lagPurposes   = 40
	lagMaxKeys    = 6 // an issuer deletes rather than uploads beyond this many keys on a client
	lagWaitBound  = 10 * time.Second
)

// lagMeasured are the models whose lag is measured, when models.All() has them: the
// voucher model (the target) and the directory model (the API's queries).
var lagMeasured = []string{models.VoucherModel, "directory"}

var (
	benchProducer = commands.Meta{Actor: domain.Actor{ID: "prod-admin", Tenant: "prod", Roles: domain.Roles{domain.RoleAdmin}}, CorrelationID: "c-prod"}
	benchConsumer = commands.Meta{Actor: domain.Actor{ID: "acme-admin", Tenant: "acme", Roles: domain.Roles{domain.RoleAdmin}}, CorrelationID: "c-acme"}
)

// BenchmarkProjectionLag500 measures the projection lag as a caller sees it: for each
// command issued through commands.Service at 500 commands/s (a mix of key uploads and
// deletions, purpose links and unlinks, client creations and purpose suspensions and
// reactivations, from 16 concurrent issuers paced by a fixed schedule), the time from the
// command's return until Reader.At — the call the API's revoking commands and
// minPosition queries make — reports that the model has applied its position. At is
// started right at the return, one per command and model, on the Runner's own Reader:
// the Runner notifies it after every acked event of every model (no polling tick), and
// every notified At reads the model's checkpoint again (and, while it is behind, the log
// after it).
//
// Metrics: p50-ms, p99-ms and max-ms of the voucher model (target p99 ≤ 10 ms),
// directory-p50-ms and directory-p99-ms for the directory model (commands on its
// streams: all of them); cmds/s actually achieved; late-cmds and max-late-ms, the
// commands the driver started more than one interval (2 ms) after their scheduled time;
// dropped-cmds, those it did not issue at all because it was more than lagMaxBehind
// behind schedule (the run is cut short rather than last minutes); timeouts, the waits
// still unanswered after lagWaitBound (counted with that lag).
func BenchmarkProjectionLag500(b *testing.B) { benchmarkLag(b, false) }

// BenchmarkProjectionLag500Applied is BenchmarkProjectionLag500 with the lag read from the
// Runner itself rather than through one Reader.At per command: one goroutine polls
// Runner.Statuses every lagPoll and takes a command as applied once its model's
// checkpoint (set when the model's router acks an event, after its write to Redis) is at
// or after the command's position. It measures the projection pipeline alone, within
// lagPoll, without the cost of the waiting callers.
func BenchmarkProjectionLag500Applied(b *testing.B) { benchmarkLag(b, true) }

const (
	lagMaxBehind = time.Second
	lagPoll      = 200 * time.Microsecond
)

func benchmarkLag(b *testing.B, applied bool) {
	ctx := context.Background()
	es, err := embedded.Open(ctx, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = es.Close() })
	cmd := commands.New(es, commands.Config{}, nil, nil)
	pool := newLagKeyPool(b, lagIssuers*(lagClients+lagAPIClients)+lagWarmup+lagCommands*b.N) // a key per command at most
	issuers, err := seedLagWorld(ctx, cmd, pool)
	if err != nil {
		b.Fatal(err)
	}
	head, err := lastPosition(ctx, es)
	if err != nil {
		b.Fatal(err)
	}

	// The Runner as `serve` runs it on Redis: every model, under its lease, fenced writes.
	c, prefix := redistest.Client(b)
	rs, err := readmodel.NewRedis(c, readmodel.WithKeyPrefix(prefix))
	if err != nil {
		b.Fatal(err)
	}
	r, err := runner.New(runner.Config{Events: es, Store: rs, Redis: c, KeyPrefix: prefix + ":", HolderID: "bench",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	b.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(safety):
			b.Error("Run did not return after cancel")
		}
	})
	rd := r.Reader()
	defs := models.All()
	for _, d := range defs {
		wctx, wcancel := context.WithTimeout(ctx, safety)
		_, err := rd.At(wctx, d.Model, head)
		wcancel()
		if err != nil {
			b.Fatalf("model %s did not reach the seeded log: %v (health: %v)", d.Model, err, r.Healthy())
		}
	}

	var measured []models.Definition
	for _, def := range defs {
		if slices.Contains(lagMeasured, def.Model) {
			measured = append(measured, def)
		}
	}
	d := &lagDriver{r: r, applied: applied, defs: measured, issuers: issuers}
	if _, err := d.phase(ctx, lagWarmup, false); err != nil {
		b.Fatal(err)
	}
	d.lags, d.timeouts = map[string][]float64{}, 0
	var st lagStats
	b.ResetTimer()
	for range b.N {
		s, err := d.phase(ctx, lagCommands, true)
		if err != nil {
			b.Fatal(err)
		}
		st.add(s)
	}
	b.StopTimer()
	if err := r.Healthy(); err != nil {
		b.Fatalf("runner unhealthy after the run: %v", err)
	}
	for _, def := range measured {
		lags := d.lags[def.Model]
		if len(lags) != st.issued {
			b.Fatalf("%d lags of %s for %d commands", len(lags), def.Model, st.issued)
		}
		slices.Sort(lags)
		unit := ""
		if def.Model != models.VoucherModel {
			unit = def.Model + "-"
		}
		b.ReportMetric(quantile(lags, 0.50), unit+"p50-ms")
		b.ReportMetric(quantile(lags, 0.99), unit+"p99-ms")
		if def.Model == models.VoucherModel {
			b.ReportMetric(lags[len(lags)-1], "max-ms")
		}
	}
	b.ReportMetric(float64(st.issued)/st.took.Seconds(), "cmds/s")
	b.ReportMetric(float64(st.late), "late-cmds")
	b.ReportMetric(float64(st.maxLate)/float64(time.Millisecond), "max-late-ms")
	b.ReportMetric(float64(st.dropped), "dropped-cmds")
	b.ReportMetric(float64(d.timeouts), "timeouts")
}

// quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func lastPosition(ctx context.Context, es eventstore.Store) (eventstore.Position, error) {
	pos := eventstore.Start
	for {
		evs, err := es.ReadAll(ctx, pos, 10_000)
		if err != nil || len(evs) == 0 {
			return pos, err
		}
		pos = evs[len(evs)-1].Position
	}
}

// lagKey is a real public key for an upload, with its kid.
type lagKey struct {
	pem []byte
	kid string
}

// lagKeyPool hands out fresh P-256 keys, made ahead so that key generation is not part
// of a command's time.
type lagKeyPool struct {
	keys []lagKey
	next atomic.Int64
}

func newLagKeyPool(b *testing.B, n int) *lagKeyPool {
	p := &lagKeyPool{keys: make([]lagKey, n)}
	for i := range p.keys {
		pem := testkeys.P256PEM(b)
		k, err := keys.Parse(pem)
		if err != nil {
			b.Fatal(err)
		}
		p.keys[i] = lagKey{pem: pem, kid: k.KID()}
	}
	return p
}

func (p *lagKeyPool) take() (lagKey, error) {
	i := p.next.Add(1) - 1
	if i >= int64(len(p.keys)) {
		return lagKey{}, errors.New("the benchmark's key pool is exhausted")
	}
	return p.keys[i], nil
}

// lagClient is a client one issuer owns: no two issuers touch the same client, so no
// command retries on a version conflict of the benchmark's own making.
type lagClient struct {
	id       string
	kind     client.Kind
	kids     []string
	purposes []string
}

// lagPurpose is a purpose one issuer suspends and reactivates.
type lagPurpose struct {
	id     string
	active bool
}

// lagIssuer issues one command at a time on its own clients.
type lagIssuer struct {
	cmd      *commands.Service
	pool     *lagKeyPool
	rng      *mrand.Rand
	clients  []*lagClient
	purposes []string      // the consumer's purposes, to link
	toggles  []*lagPurpose // the purposes this issuer suspends and reactivates
	created  int
}

// seedLagWorld creates the tenants, the catalogue, and each issuer's clients with keys
// and purpose links.
func seedLagWorld(ctx context.Context, cmd *commands.Service, pool *lagKeyPool) ([]*lagIssuer, error) {
	for _, t := range []string{"prod", "acme"} {
		if _, err := cmd.CreateTenant(ctx, operator, t, "Tenant "+t, t+"-admin", "Admin"); err != nil {
			return nil, err
		}
	}
	var eservices, purposes []string
	for i := range lagEServices {
		res, err := cmd.CreateEService(ctx, benchProducer, fmt.Sprintf("E-service %02d", i), fmt.Sprintf("https://api.prod.example/es-%02d", i), 600)
		if err != nil {
			return nil, err
		}
		eservices = append(eservices, res.ID)
	}
	for i := range lagPurposes {
		res, err := cmd.CreatePurpose(ctx, benchConsumer, eservices[i%len(eservices)], fmt.Sprintf("Purpose number %02d", i))
		if err != nil {
			return nil, err
		}
		if _, err := cmd.ActivatePurpose(ctx, benchProducer, res.ID); err != nil {
			return nil, err
		}
		purposes = append(purposes, res.ID)
	}
	issuers := make([]*lagIssuer, lagIssuers)
	for i := range issuers {
		is := &lagIssuer{cmd: cmd, pool: pool, rng: mrand.New(mrand.NewPCG(uint64(i), 4)), purposes: purposes}
		for j, pid := range purposes {
			if j%lagIssuers == i {
				is.toggles = append(is.toggles, &lagPurpose{id: pid, active: true})
			}
		}
		for j := range lagClients + lagAPIClients {
			kind := client.KindEService
			if j >= lagClients {
				kind = client.KindAPI
			}
			c, _, err := is.createClient(ctx, kind)
			if err != nil {
				return nil, err
			}
			if _, _, err := is.upload(ctx, c); err != nil {
				return nil, err
			}
			if kind == client.KindEService {
				for range 2 {
					if _, _, err := is.link(ctx, c); err != nil {
						return nil, err
					}
				}
			}
		}
		issuers[i] = is
	}
	return issuers, nil
}

func (is *lagIssuer) pick(kind client.Kind) *lagClient {
	var cs []*lagClient
	for _, c := range is.clients {
		if kind == "" || c.kind == kind {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return nil
	}
	return cs[is.rng.IntN(len(cs))]
}

// next issues one command of the mix and returns the stream it changed and its result:
// 30% key upload, 25% key deletion, 15% purpose link, 15% purpose unlink, 10% client
// creation (with one key), 5% purpose suspension or reactivation. A command that does not
// apply to the client drawn (no key left to delete, every purpose linked, …) is replaced
// by its opposite.
func (is *lagIssuer) next(ctx context.Context) (string, commands.Result, error) {
	roll := is.rng.IntN(100)
	switch {
	case roll < 55: // keys
		c := is.pick("")
		if roll < 30 && len(c.kids) < lagMaxKeys || len(c.kids) == 0 {
			return is.upload(ctx, c)
		}
		return is.deleteKey(ctx, c)
	case roll < 85: // purpose links
		c := is.pick(client.KindEService)
		if roll < 70 && len(c.purposes) < len(is.purposes) || len(c.purposes) == 0 {
			return is.link(ctx, c)
		}
		return is.unlink(ctx, c)
	case roll < 95:
		kind := client.KindEService
		if is.created%2 == 1 {
			kind = client.KindAPI
		}
		k, err := is.pool.take()
		if err != nil {
			return "", commands.Result{}, err
		}
		c, res, err := is.createClient(ctx, kind, k)
		return client.StreamName(c.id), res, err
	default:
		p := is.toggles[is.rng.IntN(len(is.toggles))]
		var res commands.Result
		var err error
		if p.active {
			res, err = is.cmd.SuspendPurpose(ctx, benchConsumer, p.id)
		} else {
			res, err = is.cmd.ActivatePurpose(ctx, benchConsumer, p.id)
		}
		p.active = !p.active
		return purpose.StreamName(p.id), res, err
	}
}

func (is *lagIssuer) createClient(ctx context.Context, kind client.Kind, ks ...lagKey) (*lagClient, commands.Result, error) {
	is.created++
	spec := commands.ClientSpec{Kind: kind, Name: fmt.Sprintf("bench client %d", is.created)}
	c := &lagClient{kind: kind}
	for _, k := range ks {
		spec.Keys = append(spec.Keys, commands.KeyInput{Name: "initial", Key: k.pem, Use: "sig"})
		c.kids = append(c.kids, k.kid)
	}
	res, err := is.cmd.CreateClient(ctx, benchConsumer, spec)
	if err != nil {
		return c, res, err
	}
	c.id = res.ID
	is.clients = append(is.clients, c)
	return c, res, nil
}

func (is *lagIssuer) upload(ctx context.Context, c *lagClient) (string, commands.Result, error) {
	k, err := is.pool.take()
	if err != nil {
		return "", commands.Result{}, err
	}
	res, kid, err := is.cmd.UploadKey(ctx, benchConsumer, commands.Clients, c.id, commands.KeyInput{Name: "rotated", Key: k.pem, Use: "sig"})
	if err == nil {
		c.kids = append(c.kids, kid)
	}
	return client.StreamName(c.id), res, err
}

func (is *lagIssuer) deleteKey(ctx context.Context, c *lagClient) (string, commands.Result, error) {
	i := is.rng.IntN(len(c.kids))
	res, err := is.cmd.DeleteKey(ctx, benchConsumer, commands.Clients, c.id, c.kids[i])
	if err == nil {
		c.kids = slices.Delete(c.kids, i, i+1)
	}
	return client.StreamName(c.id), res, err
}

func (is *lagIssuer) link(ctx context.Context, c *lagClient) (string, commands.Result, error) {
	var free []string
	for _, p := range is.purposes {
		if !slices.Contains(c.purposes, p) {
			free = append(free, p)
		}
	}
	p := free[is.rng.IntN(len(free))]
	res, err := is.cmd.AddClientPurpose(ctx, benchConsumer, c.id, p)
	if err == nil {
		c.purposes = append(c.purposes, p)
	}
	return client.StreamName(c.id), res, err
}

func (is *lagIssuer) unlink(ctx context.Context, c *lagClient) (string, commands.Result, error) {
	i := is.rng.IntN(len(c.purposes))
	res, err := is.cmd.RemoveClientPurpose(ctx, benchConsumer, c.id, c.purposes[i])
	if err == nil {
		c.purposes = slices.Delete(c.purposes, i, i+1)
	}
	return client.StreamName(c.id), res, err
}

// lagDriver paces commands by schedule and measures each one's lag.
type lagDriver struct {
	r       *runner.Runner
	applied bool // measure with the Runner's statuses instead of Reader.At
	defs    []models.Definition
	issuers []*lagIssuer

	mu       sync.Mutex
	lags     map[string][]float64 // model → lag of each measured command, in ms
	timeouts int
	errs     []error
	pending  []lagPending // applied: commands not applied yet
}

type lagPending struct {
	model string
	pos   eventstore.Position
	acked time.Time
}

type lagStats struct {
	issued, dropped int
	took            time.Duration // from the first command's scheduled start to the last acknowledgement
	late            int           // commands started more than one interval after their schedule
	maxLate         time.Duration
}

func (st *lagStats) add(s lagStats) {
	st.issued += s.issued
	st.dropped += s.dropped
	st.took += s.took
	st.late += s.late
	st.maxLate = max(st.maxLate, s.maxLate)
}

// phase issues n commands, command i scheduled at start + i/lagRate whatever happened
// before (a late command does not delay the schedule), and, when measure is set, waits
// for every lag measurement. It stops issuing once it is lagMaxBehind behind schedule.
func (d *lagDriver) phase(ctx context.Context, n int, measure bool) (lagStats, error) {
	const interval = time.Second / lagRate
	jobs := make(chan time.Time)
	var issued, waits sync.WaitGroup
	var mu sync.Mutex
	var st lagStats
	var lastAck time.Time
	for _, is := range d.issuers {
		issued.Go(func() {
			for at := range jobs {
				started := time.Now()
				stream, res, err := is.next(ctx)
				acked := time.Now()
				if err == nil && !res.Changed {
					err = fmt.Errorf("command on %s changed nothing", stream)
				}
				mu.Lock()
				if late := started.Sub(at); late > interval {
					st.late++
					st.maxLate = max(st.maxLate, late)
				}
				if acked.After(lastAck) {
					lastAck = acked
				}
				mu.Unlock()
				if err != nil {
					d.fail(err)
					continue
				}
				if !measure {
					continue
				}
				for _, def := range d.defs {
					if !def.Filter.Match(stream) {
						continue
					}
					if d.applied {
						d.mu.Lock()
						d.pending = append(d.pending, lagPending{model: def.Model, pos: res.Position, acked: acked})
						d.mu.Unlock()
						continue
					}
					waits.Go(func() { d.wait(ctx, def.Model, res.Position, acked) })
				}
			}
		})
	}
	stopWatch := make(chan struct{})
	if measure && d.applied {
		waits.Go(func() { d.watch(stopWatch) })
	}
	start := time.Now().Add(interval)
	for i := range n {
		at := start.Add(time.Duration(i) * interval)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		} else if -w > lagMaxBehind {
			st.dropped = n - i
			break
		}
		jobs <- at
	}
	close(jobs)
	issued.Wait()
	close(stopWatch)
	waits.Wait()
	st.issued, st.took = n-st.dropped, lastAck.Sub(start)
	d.mu.Lock()
	defer d.mu.Unlock()
	return st, errors.Join(d.errs...)
}

// wait waits until model has applied pos, started right at the command's return.
func (d *lagDriver) wait(ctx context.Context, model string, pos eventstore.Position, acked time.Time) {
	wctx, cancel := context.WithTimeout(ctx, lagWaitBound)
	defer cancel()
	_, err := d.r.Reader().At(wctx, model, pos)
	lag := time.Since(acked)
	if err != nil && !errors.Is(err, runner.ErrBehind) {
		d.fail(fmt.Errorf("%s at %s: %w", model, pos, err))
		return
	}
	d.record(model, lag, err != nil)
}

// watch resolves pending commands from the Runner's statuses until stop is closed and
// nothing is pending (or what is pending has waited lagWaitBound).
func (d *lagDriver) watch(stop <-chan struct{}) {
	tick := time.NewTicker(lagPoll)
	defer tick.Stop()
	stopped := false
	for {
		now := time.Now()
		cps := map[string]eventstore.Position{}
		for _, st := range d.r.Statuses() {
			cps[st.Model] = st.Checkpoint
		}
		d.mu.Lock()
		left := d.pending[:0]
		for _, p := range d.pending {
			switch {
			case p.pos.Compare(cps[p.model]) <= 0:
				d.recordLocked(p.model, now.Sub(p.acked), false)
			case now.Sub(p.acked) >= lagWaitBound:
				d.recordLocked(p.model, now.Sub(p.acked), true)
			default:
				left = append(left, p)
			}
		}
		d.pending = left
		empty := len(left) == 0
		d.mu.Unlock()
		if stopped && empty {
			return
		}
		select {
		case <-stop:
			stop, stopped = nil, true
		case <-tick.C:
		}
	}
}

func (d *lagDriver) record(model string, lag time.Duration, timedOut bool) {
	d.mu.Lock()
	d.recordLocked(model, lag, timedOut)
	d.mu.Unlock()
}

func (d *lagDriver) recordLocked(model string, lag time.Duration, timedOut bool) {
	d.lags[model] = append(d.lags[model], float64(lag)/float64(time.Millisecond))
	if timedOut {
		d.timeouts++
	}
}

func (d *lagDriver) fail(err error) {
	d.mu.Lock()
	if len(d.errs) < 10 {
		d.errs = append(d.errs, err)
	}
	d.mu.Unlock()
}

// ---------------------------------------------------------------------------------------
// Rebuild of the voucher model into Redis from 1,000,000 events.

const (
	rebuildLogEvents = 1_000_000
	rebuildProducers = 50
	rebuildConsumers = 500
	rebuildEServices = 2_000
	rebuildPurposes  = 30_000 // 60 per consumer
	// rebuildToggleEvery clients, one purpose (and one time in four an e-service) is
	// suspended or reactivated: the events that fan out to every linked client's entries.
	rebuildToggleEvery = 400
	rebuildWriters     = 512 // concurrent appenders while the log is built (group commit)
	rebuildChecks      = 400
)

// BenchmarkRebuildVoucher1M measures runner.Rebuild of the voucher model into Redis (the
// merged-write path, Direct false) from a log of 1,000,000 events of its streams: 2,000
// e-services, 30,000 purposes (requested and activated), then clients of 500 consumer
// tenants — created with members and keys, linked to purposes, keys uploaded, rotated and
// deleted, purposes unlinked, some clients deleted — with purpose and e-service
// suspensions and reactivations spread through the log. The events are the ones the
// domain aggregates decide, encoded and chained exactly as commands.Service appends them;
// the log is built once per process, outside the timer. After each rebuild (outside the
// timer) the checkpoint and a sample of entries — present and absent — are checked
// against the aggregates' final state. Metric: events/s (target ≥ 50,000).
func BenchmarkRebuildVoucher1M(b *testing.B) {
	ctx := context.Background()
	b.StopTimer()
	fx := acquireVoucherLog(b)
	es, err := embedded.Open(ctx, fx.dir)
	if err != nil {
		b.Fatal(err)
	}
	defer es.Close()
	c, prefix := redistest.Client(b)
	rs, err := readmodel.NewRedis(c, readmodel.WithKeyPrefix(prefix))
	if err != nil {
		b.Fatal(err)
	}
	events := 0
	var took time.Duration
	for range b.N {
		ns := readmodel.Namespace{Model: models.VoucherModel, Generation: runner.NewGeneration(models.Voucher, time.Now())}
		start := time.Now()
		b.StartTimer()
		res, err := runner.Rebuild(ctx, es, rs, models.Voucher, ns, runner.RebuildConfig{})
		b.StopTimer()
		took += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		events += res.Events
		if err := fx.verify(ctx, rs, ns, res); err != nil {
			b.Fatal(err)
		}
		if err := rs.DropGeneration(ctx, ns); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(events)/took.Seconds(), "events/s")
}

// voucherLog is the 1M-event log, built once per process in a temporary directory and
// removed after the last of the -count runs (each run is one call of the benchmark with
// the default -benchtime, the rebuild taking longer than it); a later call builds it
// again.
var voucherLog struct {
	mu   sync.Mutex
	fx   *voucherFixture
	uses int
}

func acquireVoucherLog(b *testing.B) *voucherFixture {
	voucherLog.mu.Lock()
	defer voucherLog.mu.Unlock()
	if voucherLog.fx == nil {
		start := time.Now()
		fx, err := buildVoucherLog(context.Background())
		if err != nil {
			b.Fatalf("build the 1M-event log: %v", err)
		}
		b.Logf("built the %d-event log in %s", rebuildLogEvents, time.Since(start).Round(time.Millisecond))
		voucherLog.fx = fx
	}
	fx := voucherLog.fx
	b.Cleanup(func() {
		voucherLog.mu.Lock()
		defer voucherLog.mu.Unlock()
		voucherLog.uses++
		if voucherLog.uses >= benchCount() && voucherLog.fx != nil {
			_ = os.RemoveAll(voucherLog.fx.dir)
			voucherLog.fx, voucherLog.uses = nil, 0
		}
	})
	return fx
}

func benchCount() int {
	if f := flag.Lookup("test.count"); f != nil {
		if n, err := strconv.Atoi(f.Value.String()); err == nil && n > 0 {
			return n
		}
	}
	return 1
}

// voucherFixture is the built log and the aggregates' final state, to check entries.
type voucherFixture struct {
	dir       string
	clients   []*fxClient
	purposes  map[string]*purpose.Purpose
	eservices map[string]*eservice.EService
}

// fxClient is a client with every kid and purpose it ever had.
type fxClient struct {
	agg      *client.Client
	kids     []string
	purposes []string
}

// fxAppend is one append: the events of one or more commands of actor on one stream.
type fxAppend struct {
	stream, aggID string
	actor         domain.Actor
	expected      eventstore.ExpectedVersion
	events        []domain.Event
	cmds          []int // the command of each event, for its correlation id
}

// fxStream tracks what has been decided on one aggregate's stream.
type fxStream struct {
	name, id string
	pending  func() []domain.Event
	sent     int   // events of pending() already appended
	cmds     []int // the command of each event decided since
	ncmd     int
}

type fxKey struct{ pem, kty, alg string }

// fxGen generates the log in order and hands appends to writers by stream, so that a
// stream's appends are written in order.
type fxGen struct {
	rng      *mrand.Rand
	at       time.Time
	total    int
	queues   []chan fxAppend
	keys     []fxKey
	kidSeq   uint64
	userSeq  int
	fx       *voucherFixture
	purposes [][]string // consumer → its purposes
	pList    []string
	esList   []string
}

func buildVoucherLog(ctx context.Context) (fx *voucherFixture, err error) {
	dir, err := os.MkdirTemp("", "keyledger-bench-voucher1M-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	// A larger WAL than the default: fewer checkpoints while the log is written.
	es, err := embedded.Open(ctx, dir, embedded.WithWALAutocheckpoint(1<<16))
	if err != nil {
		return nil, err
	}
	defer es.Close()
	g := &fxGen{rng: mrand.New(mrand.NewPCG(1, 1_000_000)), at: time.Date(2025, 1, 6, 8, 0, 0, 0, time.UTC),
		fx:       &voucherFixture{dir: dir, purposes: map[string]*purpose.Purpose{}, eservices: map[string]*eservice.EService{}},
		purposes: make([][]string, rebuildConsumers)}
	if g.keys, err = fixtureKeys(); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var werr error
	var werrOnce sync.Once
	start := func() *sync.WaitGroup {
		var wg sync.WaitGroup
		g.queues = make([]chan fxAppend, rebuildWriters)
		for i := range g.queues {
			q := make(chan fxAppend, 64)
			g.queues[i] = q
			wg.Go(func() {
				hashes := map[string]string{} // stream → hash of its last event
				for a := range q {
					if wctx.Err() != nil {
						continue
					}
					if err := appendFixture(wctx, es, hashes, a); err != nil {
						werrOnce.Do(func() { werr = err; cancel() })
					}
				}
			})
		}
		return &wg
	}
	stop := func(wg *sync.WaitGroup) error {
		for _, q := range g.queues {
			close(q)
		}
		wg.Wait()
		return werr
	}
	// The catalogue first (clients link purposes that must exist), then the clients.
	wg := start()
	g.catalogue()
	if err := stop(wg); err != nil {
		return nil, err
	}
	wg = start()
	g.clients()
	if err := stop(wg); err != nil {
		return nil, err
	}
	if g.total != rebuildLogEvents {
		return nil, fmt.Errorf("generated %d events, want %d", g.total, rebuildLogEvents)
	}
	return g.fx, nil
}

// appendFixture encodes one append as commands.Service.appendEvents does — JSON of the
// domain event, a fresh id, the actor's metadata, the aggregate id and the hash chain —
// and appends it.
func appendFixture(ctx context.Context, es eventstore.Store, hashes map[string]string, a fxAppend) error {
	prev := hashes[a.stream]
	data := make([]eventstore.EventData, len(a.events))
	corr := ""
	for i, e := range a.events {
		if i == 0 || a.cmds[i] != a.cmds[i-1] {
			corr = uuid.NewString()
		}
		raw, err := json.Marshal(e)
		if err != nil {
			return err
		}
		id := uuid.NewString()
		data[i] = eventstore.EventData{ID: id, Type: e.EventType(), Data: raw, Meta: eventstore.Metadata{
			Tenant: a.actor.Tenant, ActorID: a.actor.ID, ActorKind: eventstore.ActorUser,
			CorrelationID: corr, AggregateID: a.aggID, PrevHash: prev,
		}}
		prev = commands.EventHash(prev, id, e.EventType(), raw)
	}
	if _, err := es.Append(ctx, a.stream, a.expected, data...); err != nil {
		return fmt.Errorf("append %d events to %s: %w", len(data), a.stream, err)
	}
	hashes[a.stream] = prev
	return nil
}

// fixtureKeys returns real public keys (RSA 2048 and EC P-256) whose PEMs the uploads
// use; kids are made unique per upload (a thumbprint-like 43-character string), as the
// voucher model never derives a kid from a PEM.
func fixtureKeys() ([]fxKey, error) {
	var out []fxKey
	for i := range 24 {
		var pub any
		kty, alg := "EC", "ES256"
		if i < 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				return nil, err
			}
			pub, kty, alg = &k.PublicKey, "RSA", "RS256"
		} else {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return nil, err
			}
			pub = &k.PublicKey
		}
		k, err := keys.FromPublic(pub)
		if err != nil {
			return nil, err
		}
		out = append(out, fxKey{pem: k.PEM(), kty: kty, alg: alg})
	}
	return out, nil
}

func fxAdmin(tenant string) domain.Actor {
	return domain.Actor{ID: tenant + "-admin", Kind: eventstore.ActorUser, Tenant: tenant, Roles: domain.Roles{domain.RoleAdmin}}
}

func consumerName(i int) string { return fmt.Sprintf("tenant-%04d", i) }
func producerName(i int) string { return fmt.Sprintf("producer-%03d", i) }

func (g *fxGen) now() time.Time {
	g.at = g.at.Add(time.Duration(1+g.rng.IntN(40)) * time.Millisecond)
	return g.at
}

// hold ends one command on s whose events are appended with the next send's.
func (g *fxGen) hold(s *fxStream) {
	for range s.pending()[s.sent+len(s.cmds):] {
		s.cmds = append(s.cmds, s.ncmd)
	}
	s.ncmd++
}

// send ends one command of actor on s and appends its events with the held ones.
func (g *fxGen) send(s *fxStream, actor domain.Actor) {
	g.hold(s)
	evs := s.pending()[s.sent:]
	if len(evs) == 0 {
		return
	}
	expected := eventstore.NoStream
	if s.sent > 0 {
		expected = eventstore.Exact(uint64(s.sent - 1))
	}
	a := fxAppend{stream: s.name, aggID: s.id, actor: actor, expected: expected, events: evs, cmds: s.cmds}
	s.sent += len(evs)
	s.cmds = nil
	g.total += len(evs)
	h := fnv.New32a()
	h.Write([]byte(s.name))
	g.queues[h.Sum32()%uint32(len(g.queues))] <- a
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// catalogue: e-services of the producers, and each consumer's purposes, requested and
// activated by the producer (two commands).
func (g *fxGen) catalogue() {
	for i := range rebuildEServices {
		p := producerName(i % rebuildProducers)
		id := uuid.NewString()
		e := eservice.New(id)
		must(e.Create(fxAdmin(p), fmt.Sprintf("E-service %04d", i), fmt.Sprintf("https://api.%s.example/eservice-%04d", p, i),
			300*(1+g.rng.IntN(12)), g.now()))
		g.fx.eservices[id] = e
		g.esList = append(g.esList, id)
		g.send(&fxStream{name: eservice.StreamName(id), id: id, pending: e.Pending}, fxAdmin(p))
	}
	created := make([]*fxStream, 0, rebuildPurposes)
	for i := range rebuildPurposes {
		consumer := i % rebuildConsumers
		esid := g.esList[g.rng.IntN(len(g.esList))]
		e := g.fx.eservices[esid]
		id := uuid.NewString()
		p := purpose.New(id)
		must(p.Create(fxAdmin(consumerName(consumer)), purpose.EServiceInfo{ID: esid, ProducerTenant: e.Tenant(), Active: true},
			fmt.Sprintf("Purpose %05d of %s", i, consumerName(consumer)), g.now()))
		g.fx.purposes[id] = p
		g.purposes[consumer] = append(g.purposes[consumer], id)
		g.pList = append(g.pList, id)
		s := &fxStream{name: purpose.StreamName(id), id: id, pending: p.Pending}
		g.send(s, fxAdmin(consumerName(consumer)))
		created = append(created, s)
	}
	for _, s := range created {
		p := g.fx.purposes[s.id]
		producer := fxAdmin(p.ProducerTenant())
		must(p.Activate(producer, g.now()))
		g.send(s, producer)
	}
}

// toggle suspends or reactivates a purpose (or e-service), as its producer.
func (g *fxGen) toggle(streams map[string]*fxStream) {
	if g.rng.IntN(4) == 0 {
		id := g.esList[g.rng.IntN(len(g.esList))]
		e := g.fx.eservices[id]
		actor := fxAdmin(e.Tenant())
		if e.Active() {
			must(e.Suspend(actor, g.now()))
		} else {
			must(e.Activate(actor, g.now()))
		}
		g.send(fxStreamOf(streams, eservice.StreamName(id), id, e.Pending, 1), actor)
		return
	}
	id := g.pList[g.rng.IntN(len(g.pList))]
	p := g.fx.purposes[id]
	actor := fxAdmin(p.ProducerTenant())
	if p.State() == purpose.StateActive {
		must(p.Suspend(actor, g.now()))
	} else {
		must(p.Activate(actor, g.now()))
	}
	g.send(fxStreamOf(streams, purpose.StreamName(id), id, p.Pending, 2), actor)
}

// fxStreamOf returns the tracked stream, whose first sent events were the catalogue's.
func fxStreamOf(streams map[string]*fxStream, name, id string, pending func() []domain.Event, sent int) *fxStream {
	s, ok := streams[name]
	if !ok {
		s = &fxStream{name: name, id: id, pending: pending, sent: sent}
		streams[name] = s
	}
	return s
}

func (g *fxGen) newKey() keyring.NewKey {
	k := g.keys[g.rng.IntN(len(g.keys))]
	g.kidSeq++
	var seq [8]byte
	binary.BigEndian.PutUint64(seq[:], g.kidSeq)
	sum := sha256.Sum256(seq[:])
	return keyring.NewKey{KID: base64.RawURLEncoding.EncodeToString(sum[:]), Name: fmt.Sprintf("key %d", g.kidSeq),
		Use: "sig", Alg: k.alg, KeyType: k.kty, PEM: k.pem}
}

func (g *fxGen) user() string {
	g.userSeq++
	return fmt.Sprintf("user-%06d", g.userSeq)
}

// clients generates clients until the log holds rebuildLogEvents events; the last few
// events are member additions on the last client.
func (g *fxGen) clients() {
	toggled := map[string]*fxStream{}
	var last *fxStream
	var lastActor domain.Actor
	var lastClient *fxClient
	for n := 0; rebuildLogEvents-g.total > 40; n++ {
		if n%rebuildToggleEvery == rebuildToggleEvery-1 {
			g.toggle(toggled)
		}
		consumer := g.rng.IntN(rebuildConsumers)
		actor := fxAdmin(consumerName(consumer))
		id := uuid.NewString()
		c := client.New(id)
		fc := &fxClient{agg: c}
		s := &fxStream{name: client.StreamName(id), id: id, pending: c.Pending}
		kind := client.KindEService
		if g.rng.IntN(5) == 0 {
			kind = client.KindAPI
		}
		members := map[string]bool{g.user(): true}
		if g.rng.IntN(2) == 0 {
			members[g.user()] = true
		}
		var initial []keyring.NewKey
		for range 1 + g.rng.IntN(2) {
			k := g.newKey()
			initial = append(initial, k)
			fc.kids = append(fc.kids, k.KID)
		}
		must(c.Create(actor, client.Spec{Kind: kind, Name: fmt.Sprintf("Client %07d", n), Members: members, Keys: initial}, 100, g.now()))
		g.hold(s)
		if kind == client.KindEService {
			own := g.purposes[consumer]
			for _, j := range g.rng.Perm(len(own))[:1+g.rng.IntN(3)] {
				p := g.fx.purposes[own[j]]
				must(c.AddPurpose(actor, client.PurposeInfo{ID: p.ID(), EServiceID: p.EServiceID(), ConsumerTenant: p.ConsumerTenant(), Linkable: true}, g.now()))
				fc.purposes = append(fc.purposes, p.ID())
				g.hold(s)
			}
		}
		upload := func() {
			k := g.newKey()
			must(c.UploadKey(actor, k, 100, g.now()))
			fc.kids = append(fc.kids, k.KID)
			g.hold(s)
		}
		if g.rng.IntN(10) < 4 {
			upload()
		}
		if g.rng.IntN(10) < 3 { // rotation: a new key, then the oldest one goes
			upload()
			kr := c.Keyring()
			must(c.DeleteKey(actor, kr.Keys()[0].KID, g.now()))
			g.hold(s)
		}
		if ids := c.PurposeIDs(); len(ids) > 1 && g.rng.IntN(10) == 0 {
			must(c.RemovePurpose(actor, ids[g.rng.IntN(len(ids))], g.now()))
			g.hold(s)
		}
		if kr := c.Keyring(); len(kr.Members()) > 1 && g.rng.IntN(20) == 0 {
			must(c.RemoveMember(actor, kr.Members()[0], g.now()))
			g.hold(s)
		}
		if g.rng.IntN(25) == 0 {
			must(c.Delete(actor, g.now()))
		} else {
			last, lastActor, lastClient = s, actor, fc
		}
		g.send(s, actor)
		g.fx.clients = append(g.fx.clients, fc)
	}
	for g.total < rebuildLogEvents {
		must(lastClient.agg.AddMember(lastActor, g.user(), true, g.now()))
		g.send(last, lastActor)
	}
}

// verify checks the rebuilt generation: its checkpoint is the log's last event, and a
// random sample of clients has exactly the entries their final state calls for, with
// the right content.
func (fx *voucherFixture) verify(ctx context.Context, s readmodel.Store, ns readmodel.Namespace, res runner.RebuildResult) error {
	want := eventstore.Position{Commit: rebuildLogEvents, Prepare: rebuildLogEvents}
	if res.Events != rebuildLogEvents || res.Checkpoint != want {
		return fmt.Errorf("rebuild applied %d events up to %s, want %d up to %s", res.Events, res.Checkpoint, rebuildLogEvents, want)
	}
	if cp, ok, err := s.Checkpoint(ctx, ns); err != nil || !ok || cp != want {
		return fmt.Errorf("checkpoint of %s: %s %v %v, want %s", ns, cp, ok, err, want)
	}
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 9))
	present, absent := 0, 0
	for range rebuildChecks {
		fc := fx.clients[rng.IntN(len(fx.clients))]
		c := fc.agg
		purposes := fc.purposes
		if c.Kind() == client.KindAPI {
			purposes = []string{""}
		}
		kr := c.Keyring()
		for _, kid := range fc.kids {
			key, hasKey := kr.Key(kid)
			for _, pid := range purposes {
				got, found, err := models.LookupEntry(ctx, s, ns, c.ID(), kid, pid)
				if err != nil {
					return err
				}
				expected := c.Exists() && hasKey && (pid == "" || c.HasPurpose(pid))
				if found != expected {
					return fmt.Errorf("entry %s/%s/%s: found %v, want %v (client exists %v, key %v)", c.ID(), kid, pid, found, expected, c.Exists(), hasKey)
				}
				if !found {
					absent++
					continue
				}
				present++
				w := models.VoucherEntry{ClientID: c.ID(), ClientKind: c.Kind(), Tenant: c.Tenant(), KID: kid,
					PEM: key.PEM, Use: key.Use, Alg: key.Alg, Position: got.Position}
				if pid != "" {
					p := fx.purposes[pid]
					e := fx.eservices[p.EServiceID()]
					w.PurposeID, w.PurposeState, w.EServiceID = pid, p.State(), e.ID()
					w.EServiceState = models.EServiceActive
					if !e.Active() {
						w.EServiceState = models.EServiceSuspended
					}
					w.Audience, w.VoucherLifetimeSeconds = e.Audience(), int(e.VoucherLifetime()/time.Second)
				}
				if !reflect.DeepEqual(got, w) {
					return fmt.Errorf("entry %s/%s/%s:\n got %+v\nwant %+v", c.ID(), kid, pid, got, w)
				}
			}
		}
	}
	if present < rebuildChecks || absent == 0 {
		return fmt.Errorf("checked %d present and %d absent entries: too few to tell", present, absent)
	}
	return nil
}
