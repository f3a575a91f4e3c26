package main

import (
	"os"
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
}

// cpuSample is one reading of the meter.
type cpuSample struct {
	server, redis, self time.Duration
	ok                  bool
}

func (m cpuMeter) sample() cpuSample {
	s := cpuSample{self: selfCPU(), ok: m.serverPID > 0}
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

// cpuUse is the CPU spent between two samples.
type cpuUse struct {
	server, redis, self time.Duration
	ok                  bool
}

func (a cpuSample) until(b cpuSample) cpuUse {
	return cpuUse{server: b.server - a.server, redis: b.redis - a.redis, self: b.self - a.self, ok: a.ok && b.ok}
}
