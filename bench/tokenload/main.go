// Command tokenload measures the token endpoint of a real `keyledger serve` over HTTP on
// loopback, and the in-process crypto bound it is compared with, and prints the results
// as Go benchmark lines for bench/report (issue 5's targets in bench/targets.tsv):
//
//	go run ./bench/tokenload [flags] | tee -a bench.out
//
// It builds ./cmd/keyledger, then for every voucher algorithm × read-model store ×
// registered-key count starts one server — on a fresh copy of a seeded data directory,
// with a fresh throwaway redis-server for the Redis store — and for every concurrency
// level drives POST /oauth2/token in a closed loop (each worker sends its next request
// when the previous answer is read) with distinct pre-signed client assertions: a
// warm-up, then the measured window.
//
// # The seeded world
//
// The base world is created through the API, as users would: a producer tenant with an
// e-service, a consumer tenant with a purpose of it (activated by the producer), and
// e-service clients linked to the purpose holding the load keys (-load-keys RSA-2048 keys,
// four per client; the load signs RS256 assertions with them). A larger key count adds
// filler keys (P-256, on clients of 200 other tenants, 1–5 keys each, a fifth of them API
// clients) written straight into a copy of the base event store as the events the domain
// aggregates decide (internal/fixture), kid reservations included, before the server
// starts: the server builds its read models from them as in production. Each seeded
// data directory is built once per run and copied for every server.
//
// # Output
//
// One line per scenario, e.g.
//
//	BenchmarkTokenLoad/alg=RS256/store=embedded/keys=1k/c=16  8123  615590 ns/op  1624 tokens/s  9.1 p50-ms  14 p95-ms  18 p99-ms  0 errors  0.92 bound-fraction  0.88 crypto-fraction
//
// iterations are the vouchers issued in the measured window and ns/op its wall time per
// voucher; latencies are of every request of the window; errors count non-200 answers
// and transport failures (the first distinct ones are printed on standard error).
// bound-fraction is tokens/s over the bound of the same voucher algorithm:
//
//	BenchmarkCryptoBound/alg=RS256  the token path in process on all cores (form parse,
//	                                voucher.Verifier.Verify of an RS256 assertion with an
//	                                in-memory read model and replay cache, Issuer.Issue)
//	BenchmarkCryptoOnly/alg=RS256   the bare crypto: one RS256 verification, one voucher
//	                                signature (crypto-fraction)
//
// and for every scenario with more keys than the smallest count,
//
//	BenchmarkTokenLoadKeyGrowth/alg=RS256/store=embedded/keys=1k-1M/c=16  1  3.2 p50-growth-%
//
// the p50 growth from the smallest key count. Progress goes to standard error. The
// server, the load generator and the bound share the machine's cores: on a small machine
// the generator's own cost lowers every fraction.
//
// # Time
//
// With 1,000,000 keys most of a run is the servers building their read models before
// /readyz answers 200 (minutes each); -rotate measures both voucher algorithms on one
// server per store and key count, switching with `keyledger signing-key rotate`, which
// halves those builds. -keys 1k alone takes about two minutes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the flags.
type options struct {
	algs, stores, keys, conc string
	warmup, duration         time.Duration
	boundDuration            time.Duration
	loadKeys                 int
	maxAssertions            int
	bin, goBin, redisBin     string
	work, cache              string
	cpuProfiles, traces      string
	keep, rotate             bool
	readyTimeout             time.Duration
}

func main() {
	var o options
	defaultCache := ""
	if d, err := os.UserCacheDir(); err == nil {
		defaultCache = filepath.Join(d, "keyledger-tokenload")
	}
	flag.StringVar(&o.algs, "algs", "RS256,ES256", "voucher signing algorithms (KEYLEDGER_SIGNING_ALG): RS256, ES256")
	flag.StringVar(&o.stores, "stores", "embedded,redis", "read-model stores: embedded (in process), redis (a throwaway redis-server)")
	flag.StringVar(&o.keys, "keys", "1k,1M", "registered key counts (1000, 1k, 250k, 1M, …); each at least -load-keys")
	flag.StringVar(&o.conc, "c", "16,64", "concurrency levels: requests in flight")
	flag.StringVar(&o.cpuProfiles, "cpuprofile", "", "directory receiving each scenario's server CPU profile of its measured window (<scenario>.pprof, for go tool pprof)")
	flag.StringVar(&o.traces, "trace", "", "directory receiving a one-second execution trace of each scenario's server from the middle of its measured window (<scenario>.trace, for go tool trace) and where the traced requests spent their time, for the fastest half and the slowest 5% and 1% (<scenario>.requests.txt)")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each measured window")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "measured window per scenario")
	flag.DurationVar(&o.boundDuration, "bound-duration", 3*time.Second, "duration of each crypto-bound measurement; 0 skips the bound")
	flag.IntVar(&o.loadKeys, "load-keys", 1000, "RSA-2048 keys registered through the API and used by the load (the smallest world)")
	flag.IntVar(&o.maxAssertions, "max-assertions", 300_000, "most pre-signed assertions held (about 1 KiB each)")
	flag.StringVar(&o.bin, "bin", "", "keyledger binary to run; empty builds ./cmd/keyledger")
	flag.StringVar(&o.goBin, "go", "go", "go command used to build")
	flag.StringVar(&o.redisBin, "redis-server", "redis-server", "redis-server binary")
	flag.StringVar(&o.work, "work", "", "work directory, kept after the run; its seeded data directories are reused by later runs with the same -load-keys (delete it after changing events); empty: a temporary directory, removed")
	flag.StringVar(&o.cache, "cache", defaultCache, "directory caching the generated RSA client keys between runs; empty: generate every time")
	flag.BoolVar(&o.keep, "keep", false, "keep each scenario's data directory and logs in the work directory")
	flag.BoolVar(&o.rotate, "rotate", false, "measure every voucher algorithm on one server per store and key count, switching with \"keyledger signing-key rotate\" (the server re-reads its keys within 30s), instead of a fresh server per algorithm: one read-model build less per store and key count")
	flag.DurationVar(&o.readyTimeout, "ready-timeout", 10*time.Minute, "how long a server may take to answer /readyz 200 (read models built)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench/tokenload [flags] | tee -a bench.out\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, o, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokenload:", err)
		os.Exit(1)
	}
}

// logger writes progress lines to standard error, stamped with the time since start.
type logger struct {
	w     io.Writer
	start time.Time
}

func (l logger) logf(format string, args ...any) {
	fmt.Fprintf(l.w, "tokenload %6.1fs: %s\n", time.Since(l.start).Seconds(), fmt.Sprintf(format, args...))
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	lg := logger{w: stderr, start: time.Now()}
	logf := lg.logf
	pl, err := parsePlan(o.algs, o.stores, o.keys, o.conc)
	if err != nil {
		return err
	}
	if o.loadKeys < 1 {
		return errors.New("-load-keys must be at least 1")
	}
	if pl.keys[0] < o.loadKeys {
		return fmt.Errorf("-keys %s: every count must be at least -load-keys (%d), the keys the load uses", countLabel(pl.keys[0]), o.loadKeys)
	}
	if o.warmup < 0 || o.duration <= 0 || o.boundDuration < 0 {
		return errors.New("-warmup and -bound-duration must not be negative, -duration must be positive")
	}

	work := o.work
	if work == "" {
		if work, err = os.MkdirTemp("", "keyledger-tokenload-"); err != nil {
			return err
		}
		defer func() {
			if o.keep {
				logf("work directory kept: %s", work)
				return
			}
			_ = os.RemoveAll(work)
		}()
	} else if err := os.MkdirAll(work, 0o750); err != nil {
		return err
	}
	if work, err = filepath.Abs(work); err != nil {
		return err
	}

	bin := o.bin
	if bin == "" {
		root, err := moduleRoot(ctx, o.goBin)
		if err != nil {
			return err
		}
		logf("building ./cmd/keyledger")
		if bin, err = buildServer(ctx, o.goBin, root, work); err != nil {
			return err
		}
	}
	var redisBin string
	if slices.Contains(pl.stores, storeRedis) {
		if redisBin, err = exec.LookPath(o.redisBin); err != nil {
			return fmt.Errorf("the Redis scenarios need redis-server (-redis-server): %w", err)
		}
	}

	// One issuer and assertion audience for the whole run, so that the pre-signed
	// assertions suit every server; each server listens on this port when it is free.
	port, err := freePort()
	if err != nil {
		return err
	}
	issuer := "http://127.0.0.1:" + strconv.Itoa(port)

	cks, err := loadClientKeys(o.cache, o.loadKeys, logf)
	if err != nil {
		return err
	}
	baseDir := filepath.Join(work, "base-"+countLabel(o.loadKeys))
	w, err := baseWorld(ctx, bin, baseDir, port, issuer, cks, o.readyTimeout, logf)
	if err != nil {
		return fmt.Errorf("seed the base world: %w", err)
	}
	lks, err := w.loadKeys(cks)
	if err != nil {
		return err
	}
	p := newPool(lks, issuer, w.PurposeID, max(o.maxAssertions, 4*len(lks)))
	if err := p.ensure(4*len(lks), logf); err != nil {
		return err
	}

	fmt.Fprintf(stdout, "goos: %s\ngoarch: %s\npkg: github.com/keyledger/keyledger/bench/tokenload\n", runtime.GOOS, runtime.GOARCH)
	if cpu := cpuName(); cpu != "" {
		fmt.Fprintf(stdout, "cpu: %s\n", cpu)
	}
	bounds := map[string]bound{}
	if o.boundDuration > 0 {
		bw := newBoundWorld(w, lks, issuer, issuer)
		for _, alg := range pl.algs {
			logf("crypto bound of %s vouchers: %s on %d cores, twice", alg, o.boundDuration, runtime.GOMAXPROCS(0))
			tmp, err := os.MkdirTemp(work, "signer-")
			if err != nil {
				return err
			}
			b, err := measureBound(ctx, alg, bw, p, o.boundDuration, tmp)
			_ = os.RemoveAll(tmp)
			if err != nil {
				return fmt.Errorf("crypto bound of %s: %w", alg, err)
			}
			bounds[alg] = b
			for _, l := range boundLines(b) {
				fmt.Fprintln(stdout, l)
			}
		}
	}

	// The expected rate per algorithm sizes the pool before each warm-up: half the bound
	// at first, then the fastest warm-up seen.
	rates := map[string]float64{}
	for _, alg := range pl.algs {
		rates[alg] = max(1000, bounds[alg].pathRate()/2)
	}
	var results []result
	var failed []string
	for _, n := range pl.keys {
		src := filepath.Join(baseDir, "data")
		if n > o.loadKeys {
			if src, err = fillerWorld(ctx, work, baseDir, w, n, o.loadKeys, logf); err != nil {
				return fmt.Errorf("seed %s keys: %w", countLabel(n), err)
			}
		}
		// The servers of this key count, each with the algorithms it measures in turn.
		type serverRun struct {
			store string
			algs  []string
		}
		var runs []serverRun
		for _, alg := range pl.algs {
			for _, store := range pl.stores {
				if o.rotate && alg != pl.algs[0] {
					continue
				}
				algs := []string{alg}
				if o.rotate {
					algs = pl.algs
				}
				runs = append(runs, serverRun{store: store, algs: algs})
			}
		}
		for _, sr := range runs {
			rs, err := runServer(ctx, runConfig{opts: o, bin: bin, redisBin: redisBin, work: work, src: src, port: port,
				issuer: issuer, world: w, pool: p, store: sr.store, keys: n, algs: sr.algs, conc: pl.conc, rates: rates, logf: logf})
			for _, r := range rs {
				results = append(results, r)
				fmt.Fprintln(stdout, resultLine(r, bounds[r.alg]))
			}
			if errors.Is(err, errNoTokenEndpoint) || ctx.Err() != nil {
				return err
			}
			if err != nil {
				name := fmt.Sprintf("alg=%s/store=%s/keys=%s", strings.Join(sr.algs, "+"), sr.store, countLabel(n))
				logf("FAIL %s: %v", name, err)
				failed = append(failed, name)
			}
		}
	}
	for _, l := range growthLines(results) {
		fmt.Fprintln(stdout, l)
	}
	logf("done: %d scenarios measured in %s", len(results), time.Since(lg.start).Round(time.Second))
	if len(failed) > 0 {
		return fmt.Errorf("%d server configurations failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// baseWorld returns the world seeded in dir through the API — reusing one a previous run
// left there (with -work) when it holds the same load keys.
func baseWorld(ctx context.Context, bin, dir string, port int, issuer string, cks []clientKey, readyTimeout time.Duration, logf func(string, ...any)) (*world, error) {
	if w, err := readWorld(dir); err == nil && w.keyCount() == len(cks) {
		if _, err := w.loadKeys(cks); err == nil {
			logf("reusing the base world in %s", dir)
			return w, nil
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		return nil, err
	}
	start := time.Now()
	logf("seeding the base world through the API: %d keys", len(cks))
	if !portFree(port) {
		var err error
		if port, err = freePort(); err != nil {
			return nil, err
		}
	}
	s, _, err := startServer(ctx, serverConfig{bin: bin, port: port, dataDir: data, issuer: issuer,
		logPath: filepath.Join(dir, "serve.log")}, readyTimeout)
	if err != nil {
		return nil, err
	}
	w, err := seedWorld(ctx, s, bin, data, cks)
	if serr := s.stop(30 * time.Second); err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	if err := writeWorld(dir, w); err != nil {
		return nil, err
	}
	logf("base world seeded in %s: %d clients, %d keys", time.Since(start).Round(time.Millisecond), len(w.Clients), w.keyCount())
	return w, nil
}

// fillerWorld returns the data directory of the world with n registered keys: the base
// world's events plus n − loadKeys filler keys, built once (and reused from -work).
func fillerWorld(ctx context.Context, work, baseDir string, w *world, n, loadKeys int, logf func(string, ...any)) (string, error) {
	dir := filepath.Join(work, "keys-"+countLabel(n))
	data := filepath.Join(dir, "data")
	// The marker names the count and the base world (its purpose): a filler seeded on
	// another base world is not reused.
	done, mark := filepath.Join(dir, "seeded"), fmt.Sprintf("%d %s", n, w.PurposeID)
	if b, err := os.ReadFile(done); err == nil && strings.TrimSpace(string(b)) == mark {
		logf("reusing the %s-key data directory %s", countLabel(n), data)
		return data, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := copyStore(filepath.Join(baseDir, "data"), data); err != nil {
		return "", err
	}
	logf("seeding %d filler keys into a copy of the base world", n-loadKeys)
	st, err := seedFiller(ctx, data, w, n-loadKeys, logf)
	if err != nil {
		return "", err
	}
	logf("seeded %d filler keys on %d clients: %d events in %s", st.keys, st.clients, st.events, st.took.Round(time.Millisecond))
	return data, os.WriteFile(done, []byte(mark+"\n"), 0o640)
}

// runConfig is one server's scenarios.
type runConfig struct {
	opts          options
	bin, redisBin string
	work, src     string
	port          int
	issuer        string
	world         *world
	pool          *pool
	store         string
	keys          int
	algs          []string // the first configured at start, the others by rotation
	conc          []int
	rates         map[string]float64 // algorithm → expected tokens/s, raised by each warm-up
	logf          func(string, ...any)
}

// runServer starts one server on a fresh copy of the data directory src (and a fresh
// Redis for the Redis store), signing vouchers with rc.algs[0], checks one voucher
// completely, and measures every concurrency level on it in turn; then, for each
// further algorithm, rotates the server's signing key to it and does the same.
func runServer(ctx context.Context, rc runConfig) (results []result, err error) {
	logf := rc.logf
	sc := scenario{alg: rc.algs[0], store: rc.store, keys: rc.keys}
	name := fmt.Sprintf("alg=%s/store=%s/keys=%s", strings.Join(rc.algs, "+"), sc.store, countLabel(sc.keys))
	dir := filepath.Join(rc.work, "run", strings.ReplaceAll(name, "/", "_"))
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	defer func() {
		if !rc.opts.keep {
			_ = os.RemoveAll(dir)
		}
	}()
	data := filepath.Join(dir, "data")
	if err := copyStore(rc.src, data); err != nil {
		return nil, err
	}
	cfg := serverConfig{bin: rc.bin, port: rc.port, dataDir: data, issuer: rc.issuer, alg: sc.alg, logPath: filepath.Join(dir, "serve.log")}
	if !portFree(cfg.port) {
		if cfg.port, err = freePort(); err != nil {
			return nil, err
		}
	}
	var meter cpuMeter
	if sc.store == storeRedis {
		rdb, url, err := startRedis(ctx, rc.redisBin, dir)
		if err != nil {
			return nil, err
		}
		defer func() { _ = rdb.stop(10 * time.Second) }()
		cfg.redisURL = url
		meter.redisPID = rdb.cmd.Process.Pid
	}
	if err := rc.pool.reset(logf); err != nil {
		return nil, err
	}
	if rc.opts.cpuProfiles != "" || rc.opts.traces != "" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		cfg.debugAddr = "127.0.0.1:" + strconv.Itoa(port)
	}
	logf("%s: starting keyledger serve", name)
	s, ready, err := startServer(ctx, cfg, rc.opts.readyTimeout)
	if err != nil {
		return nil, err
	}
	defer func() {
		if serr := s.stop(30 * time.Second); serr != nil && err == nil {
			err = serr
		}
		if err != nil {
			if tail := s.logTail(20); tail != "" {
				err = fmt.Errorf("%w\nthe server's log ends with:\n%s", err, tail)
			}
		}
	}()
	logf("%s: ready in %s", name, ready.Round(time.Millisecond))
	meter.serverPID = s.cmd.Process.Pid
	if cfg.debugAddr != "" {
		meter.debugURL = "http://" + cfg.debugAddr + "/debug/pprof/"
		meter.profileDir, meter.traceDir = rc.opts.cpuProfiles, rc.opts.traces
	}

	d := newDriver(s.base, rc.conc[len(rc.conc)-1])
	defer d.close()
	want := voucherExpectation{alg: sc.alg, issuer: rc.issuer, audience: rc.world.EServiceAudience,
		purposeID: rc.world.PurposeID, lifetime: rc.world.VoucherLifetime}
	if err := d.probe(ctx, rc.pool, want); err != nil {
		return nil, err
	}
	for i, alg := range rc.algs {
		if i > 0 {
			want.alg = alg
			took, err := rotate(ctx, d, rc.pool, rc.bin, data, want)
			if err != nil {
				return results, err
			}
			logf("%s: signing with %s %s after the rotation", name, alg, took.Round(time.Millisecond))
		}
		sc.alg = alg
		for _, c := range rc.conc {
			sc.conc = c
			r, err := measure(ctx, d, rc.pool, sc, meter, rc.opts.warmup, rc.opts.duration, rc.rates, logf)
			if err != nil {
				return results, err
			}
			results = append(results, r)
		}
	}
	return results, nil
}

// rotateWait bounds how long a server may take to sign with a rotated key (it re-reads
// its keys every 30 seconds).
const rotateWait = time.Minute

// rotate runs `keyledger signing-key rotate` of want.alg on the running server's data
// directory, then probes until a voucher is signed with it (each probe checked
// completely), and returns how long the switch took.
func rotate(ctx context.Context, d *driver, p *pool, bin, dataDir string, want voucherExpectation) (time.Duration, error) {
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "signing-key", "rotate")
	cmd.Env = append(cleanEnv(), "KEYLEDGER_DATA_DIR="+dataDir, "KEYLEDGER_SIGNING_ALG="+want.alg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("keyledger signing-key rotate (%s): %v: %s", want.alg, err, strings.TrimSpace(string(out)))
	}
	for {
		err := d.probe(ctx, p, want)
		if err == nil {
			return time.Since(start), nil
		}
		if !errors.Is(err, errVoucherAlg) {
			return 0, err
		}
		if time.Since(start) > rotateWait {
			return 0, fmt.Errorf("%w %s after the rotation", err, rotateWait)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// rewarm is the load sent after the pool was topped up (the server sat idle meanwhile).
const rewarm = time.Second

// measure warms the server up at concurrency sc.conc, makes sure the pool holds enough
// assertions for the measured window at the warm-up's rate, and measures. rates holds
// the expected rate of each algorithm, to size the pool for the warm-up; measure raises
// it to the warm-up's.
func measure(ctx context.Context, d *driver, p *pool, sc scenario, meter cpuMeter, warmup, dur time.Duration, rates map[string]float64, logf func(string, ...any)) (result, error) {
	r := result{scenario: sc}
	var warmErrs, errs errorSamples
	enough := func(rate float64, d time.Duration) int {
		return int(rate*d.Seconds()*1.3) + 4*sc.conc + 100
	}
	if err := p.ensure(p.used()+enough(rates[sc.alg], warmup), logf); err != nil {
		return r, err
	}
	w := d.run(ctx, p, sc.conc, warmup, &warmErrs)
	rates[sc.alg] = max(rates[sc.alg], w.rate())
	if w.errors > 0 {
		logf("%s: %d errors in the warm-up:\n%s", sc.name(), w.errors, warmErrs.String())
	}
	if need := enough(w.rate(), dur); p.left() < need {
		if err := p.ensure(p.used()+need+enough(w.rate(), rewarm), logf); err != nil {
			return r, err
		}
		d.run(ctx, p, sc.conc, rewarm, &warmErrs)
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	profiled := meter.profile(ctx, sc.name(), dur)
	before, storeBefore := meter.sample(), storeMetrics(ctx, d.base())
	m := d.run(ctx, p, sc.conc, dur, &errs)
	r.cpu = before.until(meter.sample())
	if after := storeMetrics(ctx, d.base()); storeBefore.ok && after.ok && after.appends > storeBefore.appends {
		n := after.appends - storeBefore.appends
		r.eventsPerAppend = (after.events - storeBefore.events) / n
		r.appendMs = 1000 * (after.appendSec - storeBefore.appendSec) / n
	}
	if err := <-profiled; err != nil {
		logf("%s: no CPU profile: %v", sc.name(), err)
	}
	r.tokens, r.errors, r.elapsed, r.exhausted = m.tokens, m.errors, m.elapsed, m.exhausted
	r.latencies = m.latencies
	slices.Sort(r.latencies)
	logf("%s: %d vouchers in %s, %.0f tokens/s, p50 %.2f ms, p99 %.2f ms, %d errors", sc.name(), r.tokens,
		r.elapsed.Round(time.Millisecond), r.tokensPerSec(), quantile(r.latencies, 0.5), quantile(r.latencies, 0.99), r.errors)
	if r.errors > 0 {
		logf("%s: errors of the measured window:\n%s", sc.name(), errs.String())
	}
	if r.exhausted {
		logf("%s: the assertion pool ran out after %s of the %s window (raise -max-assertions): the figures cover that part only",
			sc.name(), r.elapsed.Round(time.Millisecond), dur)
	}
	return r, ctx.Err()
}

// cpuName is the processor's model name, as go test prints it.
func cpuName() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
