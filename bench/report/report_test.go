package report

import (
	"bytes"
	"errors"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/bench/failover"
	"github.com/tandemdb/tandem/bench/procstat"
	"github.com/tandemdb/tandem/bench/stats"
	"github.com/tandemdb/tandem/wire"
)

func sampleSummary() Summary {
	t0 := time.Unix(1700000000, 0).UTC()
	var runs []Run
	for _, wl := range []string{"kvwrite", "kvread"} {
		for _, w := range []int{1, 2, 4} {
			rec := stats.NewRecorder(t0)
			for i := range 300 * w {
				at := t0.Add(time.Duration(i) * 10 * time.Millisecond / time.Duration(w))
				rec.Record(at, time.Duration(1+i%7)*time.Millisecond)
			}
			if wl == "kvwrite" && w == 2 {
				rec.RecordError(t0.Add(time.Second), &wire.Error{Code: wire.CodeNotLeader})
				rec.RecordError(t0.Add(time.Second), errors.New("database is locked | weird"))
			}
			r := FromStats(wl, w, rec.Finish(t0.Add(3*time.Second)))
			r.SetGroupCommit(uint64(100*w), uint64(250*w), 0)
			if wl == "kvread" && w == 4 {
				r.StatusError = "unreachable"
				r.Events = []Event{{AtS: 1.5, Label: "kill leader"}}
				r.Nodes = []Node{{Name: "n1", Usage: procstat.Usage{PID: 42, CPUPercent: 55.5, RSSBytes: 64 << 20, Sockets: 7}}}
			}
			runs = append(runs, r)
		}
	}
	return Summary{
		Benchmark: "sql", Command: CommandLine([]string{"tandem", "bench", "sql", "--sweep", "1,2,4", "--db", "it's"}),
		Started: t0, Finished: t0.Add(20 * time.Second), Machine: ThisMachine(),
		Params: map[string]string{"duration": "3s", "value-size": "1024"}, Runs: runs,
		Notes: []string{"synthetic data"},
	}
}

func TestWriteAll(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	s := sampleSummary()
	files, err := Write(dir, s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"summary.json", "throughput.png", "latency.png"}
	for _, w := range want {
		found := false
		for _, f := range files {
			found = found || f == w
		}
		if !found {
			t.Errorf("%s not written: %v", w, files)
		}
	}
	if len(files) != 3+len(s.Runs)+1 {
		t.Errorf("files %v", files)
	}

	// JSON round trip.
	got, err := ReadSummary(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("summary.json round trip differs:\n got %+v\nwant %+v", got, s)
	}
	if r := got.Runs[1]; r.Errors != 2 || r.ErrorsByKind["not_leader"] != 1 || r.ErrorsByKind["busy"] != 1 ||
		r.EntriesPerSec == 0 || r.RequestsPerEntry != 2.5 {
		t.Errorf("run %+v", r)
	}

	// Markdown.
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{
		"tandem bench sql --sweep 1,2,4 --db 'it'\\''s'",
		"| kvwrite | 1 | 100.0 |",
		"| kvwrite | 2 | 200.0 |",
		"| kvread | 4 | 400.0 |",
		"busy=1 not_leader=1",
		"| 133.3* | 2.50* |",
		"group-commit counters incomplete (n/a or *): unreachable",
		"| kvwrite | 2 | busy | 1 | database is locked \\| weird |",
		"must never happen",
		"| kvread | 4 | n1 | 42 | 55.5 | 64.0 |",
		"![latency](latency.png)",
		"synthetic data",
		"CPUs",
	} {
		if !strings.Contains(string(md), w) {
			t.Errorf("report.md lacks %q:\n%s", w, md)
		}
	}

	// PNGs decode.
	for _, f := range files {
		if !strings.HasSuffix(f, ".png") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if img.Bounds().Dx() < 100 || img.Bounds().Dy() < 100 {
			t.Errorf("%s: %v", f, img.Bounds())
		}
	}

	var text bytes.Buffer
	if err := WriteText(&text, s); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(text.String(), "\n"); lines != len(s.Runs)+1 || !strings.Contains(text.String(), "kvwrite") {
		t.Errorf("text summary:\n%s", text.String())
	}
}

func TestEmptyAndErrorsText(t *testing.T) {
	dir := t.TempDir()
	if _, err := Write(dir, Summary{Benchmark: "sql"}); err != nil {
		t.Fatal(err)
	}
	if ErrorsText(Run{}) != "0" {
		t.Fatal("no errors should read 0")
	}
	r := Run{Errors: 3, ErrorsByKind: map[string]int64{"zzz": 1, "deadline": 2}}
	if got := ErrorsText(r); got != "deadline=2 zzz=1" {
		t.Fatalf("got %q", got)
	}
	if e, p := groupCommitText(Run{StatusError: "x"}); e != "n/a" || p != "n/a" {
		t.Fatalf("%q %q", e, p)
	}
	if _, p := groupCommitText(Run{}); p != "-" {
		t.Fatalf("read-only run: %q", p)
	}
	if got := CommandLine([]string{"a", "b c", ""}); got != "a 'b c' ''" {
		t.Fatalf("got %q", got)
	}
}

func TestFailoverSections(t *testing.T) {
	s := sampleSummary()
	s.Benchmark = "failover"
	s.Failover = &Failover{
		Phases: []FailoverPhase{{Phase: "leader", Rounds: 2, ResumeP50Ms: 1234.5, ResumeMaxMs: 1500, NotResumed: 1, UnknownOutcomes: 3}},
		Rounds: []FailoverRound{
			{Phase: "leader", Round: 1, Node: "node 1", KilledAtS: 2, ResumedAfterMs: 1234.5, CaughtUpAfterMs: 80, Errors: 4, UnknownOutcomes: 3},
			{Phase: "leader", Round: 2, Node: "node 2", KilledAtS: 9, ResumedAfterMs: -1, CaughtUpAfterMs: -1},
		},
		Audit: failover.Audit{Nodes: 3, Acked: 100, Lost: 1, Problems: []string{"node 2: acknowledged write 1/7 is missing"}},
	}
	var md strings.Builder
	if err := WriteMarkdown(&md, s, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Failover", "| leader | 2 | 1234.5 | 1500.0 | 1 | 3 |",
		"| leader | 2 | node 2 | 9.0 | never | never | 0 | 0 |", "### Audit: FAILED", "1 lost", "acknowledged write 1/7 is missing"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md.String())
		}
	}
	var txt strings.Builder
	if err := WriteText(&txt, s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(txt.String(), "leader kills: 2 rounds, writes resumed after p50 1234 ms, max 1500 ms (1 rounds did not resume)") ||
		!strings.Contains(txt.String(), "audit FAILED: 100 acknowledged writes on 3 nodes, 1 lost") {
		t.Errorf("text summary:\n%s", txt.String())
	}
	s.Failover.AuditOK = true
	s.Failover.Audit = failover.Audit{Nodes: 3, Acked: 100}
	md.Reset()
	if err := WriteMarkdown(&md, s, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(md.String(), "### Audit: PASSED") {
		t.Errorf("passed audit not shown:\n%s", md.String())
	}
}

func TestIdleSection(t *testing.T) {
	s := sampleSummary()
	s.Benchmark = "idle"
	s.Idle = &Idle{IntervalS: 3, Nodes: []IdleNode{
		{Mode: "tls", Name: "node 1", CPUPercent: 0.123, VolCtxPerSec: 118.25, Handshakes: 0, SocketsStart: 9, SocketsEnd: 9},
		{Mode: "plaintext", Name: "node 2", CPUPercent: 0.05, VolCtxPerSec: 99, Handshakes: 2, SocketsStart: 5, SocketsEnd: 6},
	}}
	var md strings.Builder
	if err := WriteMarkdown(&md, s, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Idle nodes", "every 3 s", "| tls | node 1 | 0.123 | 118.2 | 0 | 9 | 9 |", "| plaintext | node 2 | 0.050 | 99.0 | 2 | 5 | 6 |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report.md lacks %q:\n%s", want, md.String())
		}
	}
	var txt strings.Builder
	if err := WriteText(&txt, s); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(txt.String(), "plaintext node 2: CPU 0.050% of a core, 99.0 voluntary context switches/s, 2 TLS handshakes, sockets 5 -> 6") {
		t.Errorf("text summary:\n%s", txt.String())
	}
}
