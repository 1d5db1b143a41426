package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/bench/report"
	"github.com/tandemdb/tandem/bench/sqlbench"
	"github.com/tandemdb/tandem/bench/stats"
)

func TestBenchUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"nope"},
		{"sql", "--bogus"},
		{"sql", "extra"},
		{"sql", "--workload", "kvwrite,nope"},
		{"sql", "--workers", "0"},
		{"sql", "--sweep", "1,x"},
		{"sql", "--duration", "0s"},
		{"sql", "--consistency", "eventual"},
		{"sql", "--key-size", "2"},
		{"sql", "--keys", "0"},
		{"sql", "--db", "a/b"},
		{"sql", "--tls-cert", "x.pem"}, // TLS needs --cluster
		{"sql", "--cluster", "127.0.0.1:1", "--timeout", "500ms", "--out", "x"}, // unreachable
	} {
		var stdout, stderr bytes.Buffer
		err := runBench(context.Background(), args, nil, &stdout, &stderr)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: got %v, want a usage error (exit status 2)", args, err)
		}
	}
	for _, args := range [][]string{{"--help"}, {"sql", "--help"}} {
		var stderr bytes.Buffer
		err := runBench(context.Background(), args, nil, &bytes.Buffer{}, &stderr)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "Usage: tandem bench") {
			t.Errorf("%q: %v, %q", args, err, stderr.String())
		}
	}
	var stderr bytes.Buffer
	err := runBench(context.Background(), []string{"sql", "--cluster", "127.0.0.1:1", "--timeout", "500ms"}, nil, &bytes.Buffer{}, &stderr)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the cluster") {
		t.Errorf("unreachable cluster: %v", err)
	}
}

func TestProgressPrinter(t *testing.T) {
	var b bytes.Buffer
	p := newProgressPrinter(&b, 10*time.Second)
	for i := range 10 {
		p.print(sqlbench.Progress{Name: "kvwrite", Workers: 4, Progress: stats.Progress{Elapsed: time.Duration(i) * time.Second, Ops: int64(i * 100), OpsPerSec: 100}})
	}
	p.done()
	// Not a terminal: one line every 5 calls.
	if got := strings.Count(b.String(), "\n"); got != 2 || !strings.Contains(b.String(), "kvwrite, 4 workers:") || !strings.Contains(b.String(), "errors 0") {
		t.Fatalf("%q", b.String())
	}
}

// TestBenchSQLSelfStarted builds this command, lets `tandem bench sql` start its own 3-node
// cluster of it, runs two short workloads and checks the results folder.
func TestBenchSQLSelfStarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "tandem")
	build := exec.Command("go", "build", "-o", exe, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	old := benchExecutable
	benchExecutable = func() (string, error) { return exe, nil }
	defer func() { benchExecutable = old }()

	out := filepath.Join(dir, "results")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := runBench(ctx, []string{"sql", "--workload", "kvwrite,kvread", "--sweep", "1,2", "--duration", "1s",
		"--warmup", "200ms", "--keys", "300", "--value-size", "100", "--out", out}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	s, err := report.ReadSummary(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Runs) != 4 {
		t.Fatalf("%d runs", len(s.Runs))
	}
	for _, r := range s.Runs {
		if r.Ops == 0 || r.Errors != 0 || r.StatusError != "" || len(r.Nodes) != 3 {
			t.Errorf("%s/%d: ops %d errors %v status %q nodes %d", r.Workload, r.Workers, r.Ops, r.ErrorsByKind, r.StatusError, len(r.Nodes))
		}
		if r.Workload == "kvwrite" && (r.RaftEntries == 0 || r.RequestsPerEntry < 1) {
			t.Errorf("kvwrite/%d: no group-commit counters: %+v", r.Workers, r)
		}
	}
	for _, f := range []string{"report.md", "throughput.png", "latency.png", "timeline-kvread-w2.png"} {
		if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.Contains(stdout.String(), "kvread") || !strings.Contains(stdout.String(), "files in "+out) {
		t.Errorf("summary:\n%s", stdout.String())
	}
}
