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
		{"failover", "--rounds", "0"},
		{"failover", "--workers", "0"},
		{"failover", "--phases", "leader,candidate"},
		{"failover", "--phases", ""},
		{"failover", "--timeout", "0s"},
		{"failover", "--cluster", "127.0.0.1:1"}, // it kills nodes: only a cluster of its own
		{"failover", "extra"},
		{"idle", "--duration", "0s"},
		{"idle", "--interval", "-1s"},
		{"idle", "--modes", "tls,quic"},
		{"idle", "--modes", ","},
		{"idle", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		err := runBench(context.Background(), args, nil, &stdout, &stderr)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: got %v, want a usage error (exit status 2)", args, err)
		}
	}
	for _, args := range [][]string{{"--help"}, {"sql", "--help"}, {"failover", "--help"}, {"idle", "--help"}} {
		var stderr bytes.Buffer
		err := runBench(context.Background(), args, nil, &bytes.Buffer{}, &stderr)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stderr.String(), "Usage: tandem bench") {
			t.Errorf("%q: %v, %q", args, err, stderr.String())
		}
	}
	var stderr bytes.Buffer
	err := runBench(context.Background(), []string{"sql", "--cluster", "127.0.0.1:1", "--timeout", "500ms"}, nil, &bytes.Buffer{}, &stderr)
	var ue usageError
	if err == nil || !strings.Contains(err.Error(), "cannot reach the cluster") || errors.As(err, &ue) {
		t.Errorf("unreachable cluster: %v, want a failure that is not a usage error", err)
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
	dir := useBuiltBinary(t)

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

// TestBenchFailoverSelfStarted runs `tandem bench failover` for one round per phase on a
// 3-node cluster of a freshly built binary and checks its results: a leader and a follower
// were killed and restarted, writes resumed after each kill, and the audit passed.
func TestBenchFailoverSelfStarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	dir := useBuiltBinary(t)

	out := filepath.Join(dir, "results")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := runBench(ctx, []string{"failover", "--rounds", "1", "--workers", "2", "--settle", "500ms", "--out", out}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	s, err := report.ReadSummary(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := s.Failover
	if f == nil || len(f.Rounds) != 2 || len(f.Phases) != 2 || len(s.Runs) != 2 {
		t.Fatalf("summary: %+v", s)
	}
	if !f.AuditOK || f.Audit.Nodes != 3 || f.Audit.Acked == 0 || f.Audit.Lost != 0 || f.Audit.Duplicated != 0 {
		t.Fatalf("audit: %+v", f.Audit)
	}
	for _, r := range f.Rounds {
		if r.ResumedAfterMs < 0 || r.CaughtUpAfterMs < 0 {
			t.Errorf("round %+v: writes did not resume or the node did not catch up", r)
		}
	}
	if f.Rounds[0].Phase != "leader" || f.Rounds[1].Phase != "follower" {
		t.Errorf("phases %q, %q", f.Rounds[0].Phase, f.Rounds[1].Phase)
	}
	for _, r := range s.Runs {
		if len(r.Events) != 2 || r.Ops == 0 {
			t.Errorf("run %s: %d events, %d ops", r.Workload, len(r.Events), r.Ops)
		}
	}
	for _, name := range []string{"summary.json", "report.md", "timeline-failover-leader-w2.png", "timeline-failover-follower-w2.png"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Error(err)
		}
	}
	if !strings.Contains(stdout.String(), "audit passed") {
		t.Errorf("no audit line in the summary:\n%s", stdout.String())
	}
}

func TestFailoverPhaseSummary(t *testing.T) {
	rounds := []report.FailoverRound{
		{ResumedAfterMs: 1500, UnknownOutcomes: 1},
		{ResumedAfterMs: -1, UnknownOutcomes: 2},
		{ResumedAfterMs: 900},
		{ResumedAfterMs: 1100},
		{ResumedAfterMs: 2000},
	}
	p := phaseSummary("leader", rounds)
	if p.Rounds != 5 || p.NotResumed != 1 || p.UnknownOutcomes != 3 || p.ResumeP50Ms != 1300 || p.ResumeMaxMs != 2000 {
		t.Fatalf("%+v", p)
	}
	if p := phaseSummary("follower", rounds[:1]); p.ResumeP50Ms != 1500 || p.ResumeMaxMs != 1500 {
		t.Fatalf("one round: %+v", p)
	}
	if p := phaseSummary("follower", nil); p.Rounds != 0 || p.ResumeP50Ms != 0 {
		t.Fatalf("no round: %+v", p)
	}
}

// useBuiltBinary builds this command into a temporary directory, which it returns, and makes
// the benchmarks start their nodes from that binary until the test ends.
func useBuiltBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	exe := filepath.Join(dir, "tandem")
	build := exec.Command("go", "build", "-o", exe, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	old := benchExecutable
	benchExecutable = func() (string, error) { return exe, nil }
	t.Cleanup(func() { benchExecutable = old })
	return dir
}

// TestBenchIdleSelfStarted runs `tandem bench idle` briefly in both modes and checks what it
// reports per node: CPU and context switches measured, no TLS handshake while the pollers
// run (their connections are long-lived), and every lookup answered.
func TestBenchIdleSelfStarted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two 3-node clusters")
	}
	dir := useBuiltBinary(t)
	out := filepath.Join(dir, "results")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := runBench(ctx, []string{"idle", "--duration", "3s", "--interval", "500ms", "--warmup", "1s", "--out", out}, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	s, err := report.ReadSummary(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Idle == nil || len(s.Idle.Nodes) != 6 || len(s.Runs) != 2 {
		t.Fatalf("summary: %+v", s)
	}
	for _, n := range s.Idle.Nodes {
		if n.Mode != "tls" && n.Mode != "plaintext" {
			t.Errorf("mode %q", n.Mode)
		}
		if n.Handshakes != 0 {
			t.Errorf("%s %s: %d TLS handshakes while the pollers ran", n.Mode, n.Name, n.Handshakes)
		}
		if n.VolCtxPerSec <= 0 || n.SocketsStart == 0 || n.SocketsEnd != n.SocketsStart {
			t.Errorf("%s %s: %+v", n.Mode, n.Name, n)
		}
	}
	for _, r := range s.Runs {
		if r.Errors != 0 || r.Ops < 12 { // 3 pollers, every 500 ms, for 3 s
			t.Errorf("run %s: %d lookups, %d errors", r.Workload, r.Ops, r.Errors)
		}
	}
	if !strings.Contains(stdout.String(), "tls node 1") || !strings.Contains(stdout.String(), "plaintext node 3") {
		t.Errorf("summary lines missing:\n%s", stdout.String())
	}
}
