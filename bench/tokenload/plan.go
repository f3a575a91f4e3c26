package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Store kinds of a scenario: the server's read models in process or in Redis.
const (
	storeEmbedded = "embedded"
	storeRedis    = "redis"
)

// Voucher signing algorithms a scenario can configure.
const (
	algRS256 = "RS256"
	algES256 = "ES256"
)

// plan is the set of scenarios a run measures: every combination of its lists.
type plan struct {
	algs   []string
	stores []string
	keys   []int // registered keys, ascending
	conc   []int // concurrency levels, ascending
}

// parsePlan reads the comma-separated lists of the flags.
func parsePlan(algs, stores, keys, conc string) (plan, error) {
	var p plan
	var errs []error
	for _, a := range splitList(algs) {
		switch strings.ToUpper(a) {
		case algRS256, algES256:
			p.algs = appendNew(p.algs, strings.ToUpper(a))
		default:
			errs = append(errs, fmt.Errorf("-algs: %q: want RS256 or ES256", a))
		}
	}
	for _, s := range splitList(stores) {
		switch strings.ToLower(s) {
		case storeEmbedded, storeRedis:
			p.stores = appendNew(p.stores, strings.ToLower(s))
		default:
			errs = append(errs, fmt.Errorf("-stores: %q: want embedded or redis", s))
		}
	}
	for _, k := range splitList(keys) {
		n, err := parseCount(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("-keys: %v", err))
			continue
		}
		p.keys = appendNew(p.keys, n)
	}
	for _, c := range splitList(conc) {
		n, err := strconv.Atoi(c)
		if err != nil || n < 1 || n > 4096 {
			errs = append(errs, fmt.Errorf("-c: %q: want a concurrency from 1 to 4096", c))
			continue
		}
		p.conc = appendNew(p.conc, n)
	}
	slices.Sort(p.keys)
	slices.Sort(p.conc)
	for name, n := range map[string]int{"-algs": len(p.algs), "-stores": len(p.stores), "-keys": len(p.keys), "-c": len(p.conc)} {
		if n == 0 {
			errs = append(errs, fmt.Errorf("%s: nothing selected", name))
		}
	}
	return p, errors.Join(errs...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func appendNew[T comparable](s []T, v T) []T {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

// parseCount reads a key count: digits with an optional k or M suffix (1k = 1,000, 1M =
// 1,000,000).
func parseCount(s string) (int, error) {
	mult := 1
	num := s
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, num = 1_000, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, num = 1_000_000, s[:len(s)-1]
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > math.MaxInt32/mult {
		return 0, fmt.Errorf("%q: want a count such as 1000, 1k or 1M", s)
	}
	return n * mult, nil
}

// countLabel names a key count in benchmark names: 1k, 1M, 250k, 1500.
func countLabel(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1_000 && n%1_000 == 0:
		return strconv.Itoa(n/1_000) + "k"
	}
	return strconv.Itoa(n)
}

// scenario is one measured configuration.
type scenario struct {
	alg, store string
	keys, conc int
}

// name is the benchmark name of the scenario's result line.
func (s scenario) name() string {
	return fmt.Sprintf("BenchmarkTokenLoad/alg=%s/store=%s/keys=%s/c=%d", s.alg, s.store, countLabel(s.keys), s.conc)
}

// result is what one scenario measured.
type result struct {
	scenario
	tokens    int           // 200 answers in the measured window
	errors    int           // other answers and transport failures in the window
	elapsed   time.Duration // of the measured window, until the last answer
	latencies []float64     // ms of every request of the window (200 or not), sorted
	exhausted bool          // the assertion pool ran out before the window ended
	cpu       cpuUse        // CPU of the server, its redis-server and this program in the window
	// eventsPerAppend and appendMs are the server's event-store appends in the window
	// (the audit writer's group commit): events per append and mean append latency;
	// zero when /metrics did not say.
	eventsPerAppend, appendMs float64
}

func (r result) tokensPerSec() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.tokens) / r.elapsed.Seconds()
}

// quantile of sorted values (nearest rank); NaN for none.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// bound is the crypto bound of one voucher algorithm: the token path in process on all
// cores (Verifier.Verify + Issuer.Issue), and the bare crypto (one RS256 verification
// and one voucher signature).
type bound struct {
	alg              string
	pathOps, pathSec float64 // Verify + Issue
	cryptoOps        float64 // verify + sign only
	cryptoSec        float64
}

func (b bound) pathRate() float64   { return rate(b.pathOps, b.pathSec) }
func (b bound) cryptoRate() float64 { return rate(b.cryptoOps, b.cryptoSec) }

func rate(ops, sec float64) float64 {
	if sec <= 0 {
		return 0
	}
	return ops / sec
}

// formatNum prints a metric value compactly and without exponent for the usual ranges.
func formatNum(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "NaN"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 4, 64)
}

// boundLines are the result lines of the crypto bounds.
func boundLines(b bound) []string {
	var out []string
	if b.pathSec > 0 && b.pathOps > 0 {
		out = append(out, fmt.Sprintf("BenchmarkCryptoBound/alg=%s\t%d\t%s ns/op\t%s tokens/s", b.alg, int(b.pathOps),
			formatNum(b.pathSec*1e9/b.pathOps), formatNum(b.pathRate())))
	}
	if b.cryptoSec > 0 && b.cryptoOps > 0 {
		out = append(out, fmt.Sprintf("BenchmarkCryptoOnly/alg=%s\t%d\t%s ns/op\t%s tokens/s", b.alg, int(b.cryptoOps),
			formatNum(b.cryptoSec*1e9/b.cryptoOps), formatNum(b.cryptoRate())))
	}
	return out
}

// resultLine is the Go benchmark line of a scenario: iterations are the tokens issued in
// the measured window, ns/op the window's wall time per token. bound-fraction compares
// tokens/s with the in-process token path's bound of the same voucher algorithm,
// crypto-fraction with the bare crypto; either is left out when its bound was not
// measured.
func resultLine(r result, b bound) string {
	var sb strings.Builder
	nsPerOp := math.NaN()
	if r.tokens > 0 {
		nsPerOp = float64(r.elapsed.Nanoseconds()) / float64(r.tokens)
	}
	fmt.Fprintf(&sb, "%s\t%d\t%s ns/op\t%s tokens/s", r.name(), max(r.tokens, 1), formatNum(nsPerOp), formatNum(r.tokensPerSec()))
	for _, q := range []struct {
		q    float64
		unit string
	}{{0.50, "p50-ms"}, {0.95, "p95-ms"}, {0.99, "p99-ms"}} {
		if len(r.latencies) > 0 {
			fmt.Fprintf(&sb, "\t%s %s", formatNum(quantile(r.latencies, q.q)), q.unit)
		}
	}
	fmt.Fprintf(&sb, "\t%d errors", r.errors)
	if br := b.pathRate(); br > 0 {
		fmt.Fprintf(&sb, "\t%s bound-fraction", formatNum(r.tokensPerSec()/br))
	}
	if cr := b.cryptoRate(); cr > 0 {
		fmt.Fprintf(&sb, "\t%s crypto-fraction", formatNum(r.tokensPerSec()/cr))
	}
	if r.cpu.ok && r.tokens > 0 {
		per := func(d time.Duration) string { return formatNum(float64(d.Microseconds()) / float64(r.tokens)) }
		fmt.Fprintf(&sb, "\t%s server-cpu-us/op", per(r.cpu.server))
		if r.store == storeRedis {
			fmt.Fprintf(&sb, "\t%s redis-cpu-us/op", per(r.cpu.redis))
		}
		fmt.Fprintf(&sb, "\t%s loadgen-cpu-us/op", per(r.cpu.self))
	}
	if r.eventsPerAppend > 0 {
		fmt.Fprintf(&sb, "\t%s events/append\t%s append-ms", formatNum(r.eventsPerAppend), formatNum(r.appendMs))
	}
	return sb.String()
}

// growthLines compare each scenario's p50 with the smallest key count's p50 of the same
// algorithm, store and concurrency: 100 × (p50(keys) / p50(smallest) − 1), in percent,
// one line per larger key count.
func growthLines(results []result) []string {
	type group struct {
		alg, store string
		conc       int
	}
	base := map[group]result{}
	for _, r := range results {
		g := group{r.alg, r.store, r.conc}
		if b, ok := base[g]; (!ok || r.keys < b.keys) && len(r.latencies) > 0 {
			base[g] = r
		}
	}
	var out []string
	for _, r := range results {
		b, ok := base[group{r.alg, r.store, r.conc}]
		if !ok || r.keys == b.keys || len(r.latencies) == 0 {
			continue
		}
		p0, p1 := quantile(b.latencies, 0.5), quantile(r.latencies, 0.5)
		if !(p0 > 0) {
			continue
		}
		out = append(out, fmt.Sprintf("BenchmarkTokenLoadKeyGrowth/alg=%s/store=%s/keys=%s-%s/c=%d\t1\t%s p50-growth-%%",
			r.alg, r.store, countLabel(b.keys), countLabel(r.keys), r.conc, formatNum(100*(p1/p0-1))))
	}
	return out
}
