// Command report reads `go test -bench` output (several -count runs), prints the median
// of every metric of every benchmark, and ends with one table of every target an issue
// names: the target, the median measured in this run, and whether it is met.
//
//	go test -run '^$' -bench . -count 5 ./... | tee bench.out
//	go run ./bench/report -targets bench/targets.tsv bench.out
//
// A target whose benchmark did not run is reported as "not measured", never as met.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"golang.org/x/perf/benchfmt"

	"github.com/keyledger/keyledger/bench/benchkey"
)

// target is one line of the targets file.
type target struct {
	issue, bench, unit, op, what string
	value                        float64
}

func main() {
	targetsPath := flag.String("targets", "bench/targets.tsv", "tab-separated targets: issue, benchmark, unit, op (>= or <=), value, description")
	flag.Parse()
	if err := run(*targetsPath, flag.Args(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(targetsPath string, files []string, out io.Writer) error {
	targets, err := readTargets(targetsPath)
	if err != nil {
		return err
	}
	samples := map[string]map[string][]float64{} // "pkg.Bench" → unit → values
	var order []string
	read := func(r io.Reader, name string) error {
		br := benchfmt.NewReader(r, name)
		for br.Scan() {
			res, ok := br.Result().(*benchfmt.Result)
			if !ok {
				continue
			}
			key := benchkey.Of(res)
			if samples[key] == nil {
				samples[key] = map[string][]float64{}
				order = append(order, key)
			}
			for _, v := range res.Values {
				samples[key][v.Unit] = append(samples[key][v.Unit], v.Value)
			}
		}
		return br.Err()
	}
	if len(files) == 0 {
		if err := read(os.Stdin, "stdin"); err != nil {
			return err
		}
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return err
		}
		err = read(fh, f)
		fh.Close()
		if err != nil {
			return err
		}
	}

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(out, "\n== Medians of this run ==")
	fmt.Fprintln(tw, "benchmark\tmetric\tmedian\truns")
	for _, key := range order {
		units := make([]string, 0, len(samples[key]))
		for u := range samples[key] {
			units = append(units, u)
		}
		slices.Sort(units)
		for _, u := range units {
			vs := samples[key][u]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\n", key, u, format(median(vs)), len(vs))
		}
	}
	tw.Flush()

	fmt.Fprintln(out, "\n== Targets ==")
	fmt.Fprintln(tw, "issue\ttarget\tgoal\tmeasured (median)\tresult")
	for _, t := range targets {
		goal := fmt.Sprintf("%s %s %s", t.op, format(t.value), t.unit)
		vs := findSamples(samples, t.bench, t.unit)
		if len(vs) == 0 {
			fmt.Fprintf(tw, "#%s\t%s\t%s\t-\tnot measured\n", t.issue, t.what, goal)
			continue
		}
		m := median(vs)
		met := (t.op == ">=" && m >= t.value) || (t.op == "<=" && m <= t.value)
		result := "NOT MET"
		if met {
			result = "met"
		}
		fmt.Fprintf(tw, "#%s\t%s\t%s\t%s %s\t%s\n", t.issue, t.what, goal, format(m), t.unit, result)
	}
	return tw.Flush()
}

// findSamples matches a target's benchmark by exact key or by "pkg.Name" suffix.
func findSamples(samples map[string]map[string][]float64, bench, unit string) []float64 {
	if s, ok := samples[bench]; ok {
		return s[unit]
	}
	for key, s := range samples {
		if strings.HasSuffix(key, "."+bench) {
			return s[unit]
		}
	}
	return nil
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func format(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

func readTargets(path string) ([]target, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ts []target
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		cols := strings.Split(text, "\t")
		if len(cols) != 6 {
			return nil, fmt.Errorf("%s:%d: want 6 tab-separated columns, got %d", path, line, len(cols))
		}
		v, err := strconv.ParseFloat(cols[4], 64)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: value %q: %v", path, line, cols[4], err)
		}
		if cols[3] != ">=" && cols[3] != "<=" {
			return nil, fmt.Errorf("%s:%d: op %q: want >= or <=", path, line, cols[3])
		}
		ts = append(ts, target{issue: cols[0], bench: cols[1], unit: cols[2], op: cols[3], value: v, what: cols[5]})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, errors.New(path + ": no targets")
	}
	return ts, nil
}
