package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on every Linux
// this runs on).
const clockTick = 10 * time.Millisecond

// processCPU is the CPU time (user + system) a process has used so far, read from
// /proc/<pid>/stat; ok is false where there is no /proc or the process is gone.
func processCPU(pid int) (time.Duration, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; the fields after its ")" are fixed.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * clockTick, true
}

// selfCPU is the CPU time this program has used so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures the CPU the server, its redis-server (when there is one) and this
// program spend over a measured window.
type cpuMeter struct {
	serverPID, redisPID int // 0: not measured
	// debugURL is the server's /debug/pprof/, profileDir where CPU profiles go and
	// traceDir where execution traces go; empty: none taken.
	debugURL, profileDir, traceDir string
}

// profile takes the server's CPU profile over the next d into profileDir/<name>.pprof
// (name's slashes become underscores); the channel gives its outcome once it is
// written, at once when no profile is asked for.
func (m cpuMeter) profile(ctx context.Context, name string, d time.Duration) <-chan error {
	done := make(chan error, 2)
	n := 0
	if m.debugURL != "" && m.profileDir != "" {
		n++
		go func() {
			done <- fetchProfile(ctx, m.debugURL+"profile", d, 0, filepath.Join(m.profileDir, strings.ReplaceAll(name, "/", "_")+".pprof"))
		}()
	}
	if m.debugURL != "" && m.traceDir != "" {
		n++
		go func() { // one second from the middle of the window
			path := filepath.Join(m.traceDir, strings.ReplaceAll(name, "/", "_"))
			err := fetchProfile(ctx, m.debugURL+"trace", time.Second, d/2-time.Second/2, path+".trace")
			if err == nil {
				err = writeRequestBreakdown(path+".trace", path+".requests.txt")
			}
			done <- err
		}()
	}
	out := make(chan error, 1)
	go func() {
		var errs []error
		for range n {
			errs = append(errs, <-done)
		}
		out <- errors.Join(errs...)
	}()
	return out
}

// fetchProfile waits for delay, then GETs a profile of d from url into path.
func fetchProfile(ctx context.Context, url string, d, delay time.Duration, path string) error {
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	secs := max(1, int(math.Round(d.Seconds())))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// cpuUse is CPU time of the server, its redis-server and this program: a reading of the
// meter (used so far) or the difference of two (used in between).
type cpuUse struct {
	server, redis, self time.Duration
	ok                  bool
}

func (m cpuMeter) sample() cpuUse {
	s := cpuUse{self: selfCPU(), ok: m.serverPID > 0}
	if m.serverPID > 0 {
		var ok bool
		s.server, ok = processCPU(m.serverPID)
		s.ok = s.ok && ok
	}
	if m.redisPID > 0 {
		var ok bool
		s.redis, ok = processCPU(m.redisPID)
		s.ok = s.ok && ok
	}
	return s
}

// until is the CPU used between the readings a and b.
func (a cpuUse) until(b cpuUse) cpuUse {
	return cpuUse{server: b.server - a.server, redis: b.redis - a.redis, self: b.self - a.self, ok: a.ok && b.ok}
}

// storeSample is what the server's /metrics says of its event store's appends so far.
type storeSample struct {
	appends, events, appendSec float64
	ok                         bool
}

// storeMetrics reads the event store's append counters from the server's /metrics
// (keyledger_eventstore_*): the audit writer's group commit shows as events per append.
func storeMetrics(ctx context.Context, base string) storeSample {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return storeSample{}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return storeSample{}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return storeSample{}
	}
	var s storeSample
	found := 0
	for line := range strings.Lines(string(data)) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		switch name {
		case `keyledger_eventstore_appends_total{outcome="ok"}`:
			s.appends, found = v, found+1
		case "keyledger_eventstore_events_appended_total":
			s.events, found = v, found+1
		case "keyledger_eventstore_append_seconds_sum":
			s.appendSec, found = v, found+1
		}
	}
	s.ok = found == 3
	return s
}
