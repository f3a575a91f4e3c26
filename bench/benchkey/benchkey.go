// Package benchkey names benchmark results the way bench/report's targets do, so that a
// load generator's tests can check that what it prints is what the report looks for.
package benchkey

import (
	"strings"

	"golang.org/x/perf/benchfmt"
)

// Of is "pkg.BenchmarkName/sub" without the -GOMAXPROCS suffix, pkg the last element of
// the result's pkg: line ("BenchmarkName/sub" when there is none).
func Of(res *benchfmt.Result) string {
	base, parts := res.Name.Parts()
	name := "Benchmark" + string(base)
	for _, p := range parts {
		if len(p) > 0 && p[0] == '/' {
			name += string(p)
		}
	}
	pkg := res.GetConfig("pkg")
	if i := strings.LastIndexByte(pkg, '/'); i >= 0 {
		pkg = pkg[i+1:]
	}
	if pkg != "" {
		return pkg + "." + name
	}
	return name
}
