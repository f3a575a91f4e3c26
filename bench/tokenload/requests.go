package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/exp/trace"
)

// An execution trace of the server tells where each HTTP request's time went, which a
// CPU profile cannot: how long the request's goroutine ran, how long it sat runnable
// waiting for a processor (and what had made it runnable), and what it was blocked on.
// readRequestBreakdown reads that per request from a trace (the server's
// /debug/pprof/trace) and requestBreakdown.write prints it for the fastest half and the
// slowest 5 % and 1 %, so that a tail shows its cause.
//
// A request is a task of the trace: the server makes each request one while a trace is
// being taken (api's traceTask middleware), from its first middleware to its handler's
// return, on the goroutine serving it. Only requests that begin and end inside the trace
// count. Not seen: the time before the request's bytes were noticed by the network
// poller and the time writing its answer — part of what the caller measures.

// requestStats is one traced request.
type requestStats struct {
	task  trace.TaskID
	total time.Duration
	parts map[string]time.Duration // by part name (running, runnable after…, blocked in…)
}

// requestBreakdown is the traced requests of one trace, slowest last.
type requestBreakdown struct {
	requests []requestStats
}

// Part names: where a request's time went.
const (
	partRunning = "running"
	// A runnable part is named after what the goroutine did before: "runnable after
	// <blocked part>", "runnable after preemption", "runnable after a syscall".
	partRunnablePrefix = "runnable after "
	partBlockedPrefix  = "blocked in "
	partSyscall        = "in syscalls"
)

// waitSite names where a goroutine blocked: the innermost frame outside the runtime,
// sync and internal packages (the code that chose to wait), without the module path.
func waitSite(s trace.Stack) string {
	site := ""
	for f := range s.Frames() {
		fn := f.Func
		if strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(fn, "sync.") || strings.HasPrefix(fn, "internal/") ||
			strings.HasPrefix(fn, "syscall.") {
			continue
		}
		site = strings.TrimPrefix(fn, "github.com/keyledger/keyledger/")
		break
	}
	if site == "" {
		return "the runtime"
	}
	return site
}

// goTrack is what readRequestBreakdown knows of one goroutine.
type goTrack struct {
	since   trace.Time    // of its last transition, or of its request's beginning
	blocked string        // where it last blocked (while blocked, or runnable since)
	cause   string        // what made it runnable (while runnable)
	req     *requestStats // the request it is serving; nil: none
}

// readRequestBreakdown reads a whole trace.
func readRequestBreakdown(r io.Reader) (requestBreakdown, error) {
	tr, err := trace.NewReader(r)
	if err != nil {
		return requestBreakdown{}, fmt.Errorf("execution trace: %w", err)
	}
	var b requestBreakdown
	gs := map[trace.GoID]*goTrack{}
	track := func(id trace.GoID, now trace.Time) *goTrack {
		g := gs[id]
		if g == nil {
			g = &goTrack{since: now}
			gs[id] = g
		}
		return g
	}
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return b, fmt.Errorf("execution trace: %w", err)
		}
		now := ev.Time()
		switch ev.Kind() {
		case trace.EventTaskBegin:
			if ev.Goroutine() == trace.NoGoroutine {
				continue
			}
			g := track(ev.Goroutine(), now)
			g.req, g.since = &requestStats{task: ev.Task().ID, parts: map[string]time.Duration{}}, now
		case trace.EventTaskEnd:
			g := gs[ev.Goroutine()]
			if g == nil || g.req == nil || g.req.task != ev.Task().ID {
				continue // begun before the trace, or on another goroutine
			}
			q := g.req
			q.parts[partRunning] += time.Duration(now - g.since)
			for _, d := range q.parts {
				q.total += d
			}
			b.requests = append(b.requests, *q)
			g.req, g.since = nil, now
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				continue
			}
			from, to := st.Goroutine()
			g := track(st.Resource.Goroutine(), now)
			if q := g.req; q != nil {
				d := time.Duration(now - g.since)
				switch from {
				case trace.GoRunning:
					q.parts[partRunning] += d
				case trace.GoRunnable:
					q.parts[partRunnablePrefix+g.cause] += d
				case trace.GoWaiting:
					q.parts[partBlockedPrefix+g.blocked] += d
				case trace.GoSyscall:
					q.parts[partSyscall] += d
				}
			}
			switch {
			case to == trace.GoWaiting:
				g.blocked = waitSite(st.Stack)
			case to == trace.GoRunnable && from == trace.GoWaiting:
				g.cause = g.blocked
			case to == trace.GoRunnable && from == trace.GoRunning:
				g.cause = "preemption"
			case to == trace.GoRunnable && from == trace.GoSyscall:
				g.cause = "a syscall"
			case to == trace.GoRunnable:
				g.cause = "creation"
			}
			g.since = now
		}
	}
	slices.SortFunc(b.requests, func(x, y requestStats) int { return cmp.Compare(x.total, y.total) })
	return b, nil
}

// writeRequestBreakdown writes the breakdown of the trace at tracePath to out.
func writeRequestBreakdown(tracePath, out string) error {
	in, err := os.Open(tracePath)
	if err != nil {
		return err
	}
	b, err := readRequestBreakdown(in)
	_ = in.Close()
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := b.write(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// quantile is the q-quantile of the requests' server-side time.
func (b requestBreakdown) quantile(q float64) time.Duration {
	if len(b.requests) == 0 {
		return 0
	}
	return b.requests[int(q*float64(len(b.requests)-1))].total
}

// group is a share of the requests (sorted fastest first) and the mean of each part.
type group struct {
	name  string
	n     int
	total time.Duration
	parts map[string]time.Duration
}

func (b requestBreakdown) group(name string, from, to int) group {
	g := group{name: name, n: to - from, parts: map[string]time.Duration{}}
	if g.n <= 0 {
		return g
	}
	for _, r := range b.requests[from:to] {
		g.total += r.total
		for k, d := range r.parts {
			g.parts[k] += d
		}
	}
	n := time.Duration(g.n)
	g.total /= n
	for k := range g.parts {
		g.parts[k] /= n
	}
	return g
}

// groups are the columns write prints: all requests, the fastest half, the slowest 5 %
// and the slowest 1 % (at least one request each).
func (b requestBreakdown) groups() []group {
	n := len(b.requests)
	tail := func(pct int) int { return min(n-1, n-max(1, n*pct/100)) }
	return []group{
		b.group("all", 0, n),
		b.group("fastest 50%", 0, n/2),
		b.group("slowest 5%", tail(5), n),
		b.group("slowest 1%", tail(1), n),
	}
}

// minPart is the least mean, in some column, for a part to get its own row; the rest
// are summed as "other".
const minPart = 50 * time.Microsecond

// write prints the breakdown: the quantiles of the requests' server-side time, then the
// mean time of each part per group of requests, largest in the slowest 1 % first.
func (b requestBreakdown) write(w io.Writer) error {
	if len(b.requests) == 0 {
		_, err := fmt.Fprintln(w, "no request began and ended inside the trace")
		return err
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	gs := b.groups()
	names := []string{partRunning}
	seen := map[string]bool{partRunning: true}
	for _, g := range gs {
		for k, d := range g.parts {
			if d >= minPart && !seen[k] {
				seen[k] = true
				names = append(names, k)
			}
		}
	}
	last := gs[len(gs)-1]
	slices.SortFunc(names, func(x, y string) int {
		return cmp.Or(cmp.Compare(last.parts[y], last.parts[x]), cmp.Compare(x, y))
	})
	if _, err := fmt.Fprintf(w, "%d requests traced, server side (ms): p50 %s, p95 %s, p99 %s, max %s\n", len(b.requests),
		ms(b.quantile(0.5)), ms(b.quantile(0.95)), ms(b.quantile(0.99)), ms(b.quantile(1))); err != nil {
		return err
	}
	// Labels left-aligned, figures right-aligned: every figure cell is padded to one width.
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	const width = 18
	fmt.Fprint(tw, "mean ms per request")
	for _, g := range gs {
		fmt.Fprintf(tw, "\t%*s", width, fmt.Sprintf("%s (%d)", g.name, g.n))
	}
	row := func(label string, value func(group) time.Duration) {
		fmt.Fprint(tw, "\n  "+label)
		for _, g := range gs {
			fmt.Fprintf(tw, "\t%*s", width, ms(value(g)))
		}
	}
	row("total", func(g group) time.Duration { return g.total })
	for _, k := range names {
		row(k, func(g group) time.Duration { return g.parts[k] })
	}
	row("other", func(g group) time.Duration {
		var other time.Duration
		for k, d := range g.parts {
			if !seen[k] {
				other += d
			}
		}
		return other
	})
	fmt.Fprintln(tw)
	return tw.Flush()
}
