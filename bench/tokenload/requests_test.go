package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/trace"
	"strings"
	"testing"
	"time"
)

// blockInTestHandler is where the test's handler waits: the breakdown must name it.
func blockInTestHandler(d time.Duration) { <-time.After(d) }

// TestRequestBreakdown traces a real net/http server answering 20 requests, each a
// task of the trace as the server's requests are and each blocked 3 ms in its handler,
// and checks that the breakdown finds every request and the time each spent blocked,
// by where.
func TestRequestBreakdown(t *testing.T) {
	const n, hold = 20, 3 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, task := trace.NewTask(r.Context(), "GET /")
		defer task.End()
		blockInTestHandler(hold)
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()

	var buf bytes.Buffer
	if err := trace.Start(&buf); err != nil {
		t.Fatal(err)
	}
	for range n {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			trace.Stop()
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	trace.Stop()

	b, err := readRequestBreakdown(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.requests) != n {
		t.Fatalf("%d requests traced, want %d", len(b.requests), n)
	}
	var site string
	for _, r := range b.requests {
		var sum, blocked time.Duration
		for k, d := range r.parts {
			sum += d
			if strings.HasPrefix(k, partBlockedPrefix) && strings.HasSuffix(k, "blockInTestHandler") {
				site, blocked = k, d
			}
		}
		// The trace's clock is not the timer's: allow it 10 % short of the hold.
		if blocked < hold*9/10 {
			t.Fatalf("request blocked %s in the handler, want about %s; parts %v", blocked, hold, r.parts)
		}
		if r.total != sum || r.total < blocked+r.parts[partRunning] {
			t.Fatalf("request total %s, parts %v", r.total, r.parts)
		}
		if r.parts[partRunning] <= 0 {
			t.Fatalf("request never ran: %v", r.parts)
		}
	}
	if q := b.quantile(0.5); q < hold*9/10 {
		t.Fatalf("p50 %s, below the handler's %s", q, hold)
	}

	var out strings.Builder
	if err := b.write(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"20 requests traced", "slowest 1% (1)", site, partRunning} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the breakdown lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRequestBreakdownRefusesNonTraces(t *testing.T) {
	if _, err := readRequestBreakdown(strings.NewReader("not a trace")); err == nil {
		t.Fatal("no error for a file that is no execution trace")
	}
	var out strings.Builder
	if err := (requestBreakdown{}).write(&out); err != nil || !strings.Contains(out.String(), "no request") {
		t.Fatalf("empty breakdown wrote %q, %v", out.String(), err)
	}
}
