package runner

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func numGC() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.NumGC
}

func TestBoostGCIsSharedAndRestored(t *testing.T) {
	t.Setenv("GOGC", "") // as when the operator left it unset
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	percent := func() int { p := debug.SetGCPercent(-1); debug.SetGCPercent(p); return p }

	end1 := boostGC()
	end2 := boostGC()
	if p := percent(); p != rebuildGCPercent {
		t.Fatalf("during two rebuilds GC percent %d, want %d", p, rebuildGCPercent)
	}
	end1()
	if p := percent(); p != rebuildGCPercent {
		t.Fatalf("one rebuild still running: GC percent %d, want %d", p, rebuildGCPercent)
	}
	before := numGC()
	end2()
	if p := percent(); p != 100 {
		t.Fatalf("after the rebuilds GC percent %d, want 100 restored", p)
	}
	if numGC() == before {
		t.Fatal("no collection once the last rebuild ended")
	}
	// A process already collecting less often keeps its setting.
	debug.SetGCPercent(500)
	end := boostGC()
	if p := percent(); p != 500 {
		t.Fatalf("GC percent %d during a rebuild, want the process's 500", p)
	}
	end()
	if p := percent(); p != 500 {
		t.Fatalf("GC percent %d after, want 500", p)
	}
	// An operator's GOGC is left alone.
	t.Setenv("GOGC", "50")
	debug.SetGCPercent(50)
	end = boostGC()
	if p := percent(); p != 50 {
		t.Fatalf("GC percent %d during a rebuild with GOGC=50, want 50", p)
	}
	before = numGC()
	end()
	if numGC() == before {
		t.Fatal("with GOGC set, no collection once the rebuild ended")
	}
}
