package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportMediansAndTargets(t *testing.T) {
	dir := t.TempDir()
	targets := filepath.Join(dir, "targets.tsv")
	os.WriteFile(targets, []byte("# c\n2\tembedded.BenchmarkA\tevents/s\t>=\t100\tA fast\n2\tembedded.BenchmarkB\tevents/s\t>=\t100\tB fast\n2\tembedded.BenchmarkC\tevents/s\t>=\t1\tC ran\n"), 0o644)
	out := filepath.Join(dir, "bench.out")
	os.WriteFile(out, []byte(`pkg: github.com/keyledger/keyledger/eventstore/embedded
BenchmarkA-2   10   100 ns/op   90 events/s
BenchmarkA-2   10   100 ns/op   150 events/s
BenchmarkA-2   10   100 ns/op   120 events/s
BenchmarkB-2   10   100 ns/op   50 events/s
`), 0o644)
	var sb strings.Builder
	if err := run(targets, []string{out}, &sb); err != nil {
		t.Fatal(err)
	}
	got := sb.String()
	lineWith := func(substr string) string {
		for _, l := range strings.Split(got, "\n") {
			if l = strings.Join(strings.Fields(l), " "); strings.Contains(l, substr) {
				return l
			}
		}
		t.Fatalf("report has no line with %q:\n%s", substr, got)
		return ""
	}
	checks := map[string]string{
		"embedded.BenchmarkA events/s": "embedded.BenchmarkA events/s 120.00 3", // median of 90, 120, 150
		"A fast":                       "#2 A fast >= 100.00 events/s 120.00 events/s met",
		"B fast":                       "#2 B fast >= 100.00 events/s 50.00 events/s NOT MET",
		"C ran":                        "#2 C ran >= 1.00 events/s - not measured",
	}
	for find, want := range checks {
		if l := lineWith(find); l != want {
			t.Errorf("line %q, want %q", l, want)
		}
	}
}
