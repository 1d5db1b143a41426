// Package report writes the results folder of a benchmark run: summary.json (the Summary
// struct below), report.md (tables, the command line, machine facts, links to the plots) and
// PNG plots drawn with gonum.org/v1/plot: throughput and p50/p99 latency against workers (one
// line per workload) and, per run, throughput and latency over time with marked events.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandemdb/tandem/bench/failover"
	"github.com/tandemdb/tandem/bench/procstat"
	"github.com/tandemdb/tandem/bench/stats"
)

// Summary is the content of summary.json: one benchmark invocation.
type Summary struct {
	Benchmark string            `json:"benchmark"`          // "sql", "failover", "idle", ...
	Command   string            `json:"command"`            // the command line that produced it
	Started   time.Time         `json:"started"`            // wall-clock start (UTC)
	Finished  time.Time         `json:"finished"`           // wall-clock end (UTC)
	Machine   Machine           `json:"machine"`            // where it ran
	Params    map[string]string `json:"params"`             // effective settings (flag values)
	Runs      []Run             `json:"runs"`               // one per workload and worker count, in run order
	Notes     []string          `json:"notes,omitempty"`    // free-form remarks shown in report.md
	Failover  *Failover         `json:"failover,omitempty"` // tandem bench failover only
	Idle      *Idle             `json:"idle,omitempty"`     // tandem bench idle only
}

// Idle is what tandem bench idle measures: each node of an idle cluster while a poller per
// node asks it for the leader and then the leader for its status, every IntervalS seconds.
type Idle struct {
	IntervalS float64    `json:"interval_s"`
	Nodes     []IdleNode `json:"nodes"` // per mode and node
}

// IdleNode is one node process during the measured period of one mode.
type IdleNode struct {
	Mode         string  `json:"mode"` // "tls" or "plaintext"
	Name         string  `json:"name"`
	CPUPercent   float64 `json:"cpu_percent"`           // of one core, utime+stime from /proc
	VolCtxPerSec float64 `json:"voluntary_ctx_per_sec"` // summed over all threads
	Handshakes   uint64  `json:"tls_handshakes"`        // TLS handshakes the node completed during the period
	SocketsStart int     `json:"sockets_start"`
	SocketsEnd   int     `json:"sockets_end"`
}

// Failover is what tandem bench failover measures beside its runs: each kill, the time until
// writes resumed, and the audit of every node's rows against the acknowledged writes.
type Failover struct {
	Phases []FailoverPhase `json:"phases"`
	Rounds []FailoverRound `json:"rounds"`
	Audit  failover.Audit  `json:"audit"`
	// AuditOK: no acknowledged write lost, none duplicated, no unexpected row, all nodes equal.
	AuditOK bool `json:"audit_ok"`
}

// FailoverPhase summarizes the rounds that killed one kind of node ("leader" or "follower").
type FailoverPhase struct {
	Phase           string  `json:"phase"`
	Rounds          int     `json:"rounds"`
	ResumeP50Ms     float64 `json:"resume_p50_ms"` // over the rounds in which writes resumed
	ResumeMaxMs     float64 `json:"resume_max_ms"`
	NotResumed      int     `json:"not_resumed"` // rounds in which writes did not resume in time
	UnknownOutcomes int64   `json:"unknown_outcomes"`
}

// FailoverRound is one kill -9 and restart.
type FailoverRound struct {
	Phase           string  `json:"phase"`
	Round           int     `json:"round"`
	Node            string  `json:"node"`
	KilledAtS       float64 `json:"killed_at_s"`        // seconds from the start of the phase's run
	ResumedAfterMs  float64 `json:"resumed_after_ms"`   // kill to the end of the first successful write started after it; -1: never
	UnknownOutcomes int64   `json:"unknown_outcomes"`   // writes of the round whose outcome is unknown
	Errors          int64   `json:"errors"`             // failed writes of the round (all kinds)
	CaughtUpAfterMs float64 `json:"caught_up_after_ms"` // restart to all nodes healthy at one applied index; -1: never
}

// Machine describes the host of the run.
type Machine struct {
	Hostname  string `json:"hostname"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	CPUs      int    `json:"cpus"`       // runtime.NumCPU: CPUs usable by this process
	GoVersion string `json:"go_version"` // of the benchmark binary
	Kernel    string `json:"kernel,omitempty"`
	CPUModel  string `json:"cpu_model,omitempty"`
}

// Run is one workload at one worker count. Latencies are of successful operations, in
// milliseconds; rates are per second of the run's measured duration.
type Run struct {
	Workload  string  `json:"workload"`
	Workers   int     `json:"workers"`
	DurationS float64 `json:"duration_s"`
	Ops       int64   `json:"ops"` // successful operations
	OpsPerSec float64 `json:"ops_per_sec"`
	MeanMs    float64 `json:"mean_ms"`
	P50Ms     float64 `json:"p50_ms"`
	P90Ms     float64 `json:"p90_ms"`
	P99Ms     float64 `json:"p99_ms"`
	P999Ms    float64 `json:"p999_ms"`
	MaxMs     float64 `json:"max_ms"`

	Errors       int64             `json:"errors"`                 // failed operations
	ErrorsByKind map[string]int64  `json:"errors_by_kind"`         // stats.Kind → count (kinds seen only)
	FirstErrors  map[string]string `json:"first_errors,omitempty"` // stats.Kind → first message of that kind

	// Group commit, from the nodes' status counters sampled before and after the run (summed
	// over all nodes). Zero when the counters could not be read (see StatusError).
	RaftEntries      uint64  `json:"raft_entries"`
	RaftRequests     uint64  `json:"raft_requests"`
	EntriesPerSec    float64 `json:"raft_entries_per_sec"`
	RequestsPerEntry float64 `json:"requests_per_entry"` // average batch size
	StatusError      string  `json:"status_error,omitempty"`

	Nodes  []Node        `json:"nodes,omitempty"`  // per-node process use during the run, when known
	Events []Event       `json:"events,omitempty"` // marked times (e.g. a kill), for the timeline plot
	Series []stats.Point `json:"series"`           // per second
}

// Node is the resource use of one node process during a run.
type Node struct {
	Name string `json:"name"`
	procstat.Usage
}

// Event is a marked moment of a run, in seconds from its start.
type Event struct {
	AtS   float64 `json:"at_s"`
	Label string  `json:"label"`
}

// FromStats fills a Run's measured fields from a recorder's summary.
func FromStats(workload string, workers int, s stats.Summary) Run {
	r := Run{
		Workload: workload, Workers: workers, DurationS: s.Duration.Seconds(),
		Ops: s.Ops, OpsPerSec: s.OpsPerSec, MeanMs: s.MeanMs, P50Ms: s.P50Ms, P90Ms: s.P90Ms,
		P99Ms: s.P99Ms, P999Ms: s.P999Ms, MaxMs: s.MaxMs, Errors: s.Errors,
		ErrorsByKind: map[string]int64{}, Series: s.Series,
	}
	for k, n := range s.ByKind {
		r.ErrorsByKind[string(k)] = n
	}
	if len(s.First) > 0 {
		r.FirstErrors = map[string]string{}
		for k, m := range s.First {
			r.FirstErrors[string(k)] = m
		}
	}
	return r
}

// SetGroupCommit fills the group-commit fields from the counter deltas of a run, measured
// over seconds (the time between the two samples; the run's duration when seconds <= 0).
func (r *Run) SetGroupCommit(entries, requests uint64, seconds float64) {
	if seconds <= 0 {
		seconds = r.DurationS
	}
	r.RaftEntries, r.RaftRequests = entries, requests
	if seconds > 0 {
		r.EntriesPerSec = float64(entries) / seconds
	}
	r.RequestsPerEntry = stats.Ratio(float64(requests), float64(entries))
}

// ThisMachine describes the current host.
func ThisMachine() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// CommandLine renders args (os.Args) as a shell command, quoting where needed.
func CommandLine(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@+%", r))
		}) < 0 {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

// Write creates dir and writes summary.json, report.md and the plots into it. It returns
// the names of the files written (relative to dir).
func Write(dir string, s Summary) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	files = append(files, "summary.json")
	plots, err := WritePlots(dir, s)
	files = append(files, plots...)
	if err != nil {
		return files, err
	}
	f, err := os.Create(filepath.Join(dir, "report.md"))
	if err != nil {
		return files, err
	}
	if err := WriteMarkdown(f, s, plots); err != nil {
		f.Close()
		return files, err
	}
	if err := f.Close(); err != nil {
		return files, err
	}
	return append(files, "report.md"), nil
}

// ReadSummary reads a summary.json.
func ReadSummary(path string) (Summary, error) {
	var s Summary
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	err = json.Unmarshal(b, &s)
	return s, err
}

// ErrorsText renders errors by kind as "busy=1 not_leader=2" in report order ("0" if none).
func ErrorsText(r Run) string {
	if r.Errors == 0 {
		return "0"
	}
	var parts []string
	seen := map[string]bool{}
	for _, k := range stats.Kinds {
		if n := r.ErrorsByKind[string(k)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, n))
			seen[string(k)] = true
		}
	}
	var rest []string
	for k, n := range r.ErrorsByKind {
		if !seen[k] && n > 0 {
			rest = append(rest, fmt.Sprintf("%s=%d", k, n))
		}
	}
	sort.Strings(rest)
	return strings.Join(append(parts, rest...), " ")
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
func f3(v float64) string { return fmt.Sprintf("%.3f", v) }

// WriteMarkdown writes report.md; plots are the PNG names to link.
func WriteMarkdown(w io.Writer, s Summary, plots []string) error {
	var b strings.Builder
	title := s.Benchmark
	if title == "" {
		title = "benchmark"
	}
	fmt.Fprintf(&b, "# tandem bench %s\n\n", title)
	fmt.Fprintf(&b, "Command:\n\n```\n%s\n```\n\n", s.Command)
	m := s.Machine
	fmt.Fprintf(&b, "- Date: %s (took %v)\n", s.Started.UTC().Format(time.RFC3339), s.Finished.Sub(s.Started).Round(time.Second))
	fmt.Fprintf(&b, "- Machine: %s, %s/%s, %d CPUs", m.Hostname, m.OS, m.Arch, m.CPUs)
	if m.CPUModel != "" {
		fmt.Fprintf(&b, " (%s)", m.CPUModel)
	}
	if m.Kernel != "" {
		fmt.Fprintf(&b, ", kernel %s", m.Kernel)
	}
	fmt.Fprintf(&b, "\n- Go: %s\n", m.GoVersion)
	if len(s.Params) > 0 {
		keys := make([]string, 0, len(s.Params))
		for k := range s.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("- Settings:")
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=`%s`", k, s.Params[k])
		}
		b.WriteString("\n")
	}
	for _, n := range s.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}

	b.WriteString("\n## Results\n\nLatencies are of successful operations, in milliseconds. Raft entries/s and requests per\n" +
		"entry come from the nodes' status counters (requests per entry > 1 means group commit batched them).\n\n")
	b.WriteString("| workload | workers | ops/s | mean | p50 | p90 | p99 | p99.9 | max | ops | errors | raft entries/s | requests/entry |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n")
	for _, r := range s.Runs {
		ent, rpe := groupCommitText(r)
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s |\n",
			r.Workload, r.Workers, f1(r.OpsPerSec), f3(r.MeanMs), f3(r.P50Ms), f3(r.P90Ms), f3(r.P99Ms),
			f3(r.P999Ms), f3(r.MaxMs), r.Ops, ErrorsText(r), ent, rpe)
	}

	for _, r := range s.Runs {
		if r.StatusError != "" {
			fmt.Fprintf(&b, "\n%s, %d workers: group-commit counters incomplete (n/a or *): %s\n", r.Workload, r.Workers, r.StatusError)
		}
	}

	var errRuns []Run
	for _, r := range s.Runs {
		if r.Errors > 0 {
			errRuns = append(errRuns, r)
		}
	}
	b.WriteString("\n## Errors\n\n")
	if len(errRuns) == 0 {
		b.WriteString("No operation failed (in particular, no \"database is locked\" reached a client).\n")
	} else {
		b.WriteString("| workload | workers | kind | count | first message |\n|---|---:|---|---:|---|\n")
		for _, r := range errRuns {
			kinds := make([]string, 0, len(r.ErrorsByKind))
			for k := range r.ErrorsByKind {
				kinds = append(kinds, k)
			}
			sort.Strings(kinds)
			for _, k := range kinds {
				msg := strings.ReplaceAll(r.FirstErrors[k], "|", `\|`)
				msg = strings.ReplaceAll(msg, "\n", " ")
				fmt.Fprintf(&b, "| %s | %d | %s | %d | %s |\n", r.Workload, r.Workers, k, r.ErrorsByKind[k], msg)
			}
		}
		if n := sumKind(s.Runs, string(stats.KindBusy)); n > 0 {
			fmt.Fprintf(&b, "\n**%d \"database is locked\"/busy errors reached clients: this must never happen.**\n", n)
		}
	}

	var nodeRuns []Run
	for _, r := range s.Runs {
		if len(r.Nodes) > 0 {
			nodeRuns = append(nodeRuns, r)
		}
	}
	if len(nodeRuns) > 0 {
		b.WriteString("\n## Node processes\n\nCPU is a percentage of one core over the run; RSS, threads and sockets at its end.\n\n")
		b.WriteString("| workload | workers | node | pid | CPU % | RSS MiB | vol. ctx switches/s | threads | sockets |\n")
		b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range nodeRuns {
			for _, n := range r.Nodes {
				fmt.Fprintf(&b, "| %s | %d | %s | %d | %s | %s | %s | %d | %d |\n", r.Workload, r.Workers, n.Name, n.PID,
					f1(n.CPUPercent), f1(float64(n.RSSBytes)/(1<<20)), f1(n.VolCtxPerSec), n.Threads, n.Sockets)
			}
		}
	}

	if f := s.Failover; f != nil {
		writeFailoverMarkdown(&b, f)
	}
	if i := s.Idle; i != nil {
		fmt.Fprintf(&b, "\n## Idle nodes\n\nEach node's poller asks it for the leader, then the leader for its status, every %.0f s. "+
			"CPU is a percentage of one core (utime+stime); context switches are voluntary ones summed over all threads; "+
			"TLS handshakes are those the node completed during the measured period.\n\n", i.IntervalS)
		b.WriteString("| mode | node | CPU % | vol. ctx switches/s | TLS handshakes | sockets at start | sockets at end |\n|---|---|---:|---:|---:|---:|---:|\n")
		for _, n := range i.Nodes {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d | %d |\n", n.Mode, n.Name, f3(n.CPUPercent), f1(n.VolCtxPerSec),
				n.Handshakes, n.SocketsStart, n.SocketsEnd)
		}
	}

	if len(plots) > 0 {
		b.WriteString("\n## Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// groupCommitText renders entries/s and requests per entry ("n/a" without counters, "-"
// per entry when no entry was proposed, as in a read-only run).
// A "*" marks counters missing some node (see Run.StatusError).
func groupCommitText(r Run) (string, string) {
	mark := ""
	switch {
	case r.StatusError != "" && r.RaftEntries == 0:
		return "n/a", "n/a"
	case r.StatusError != "":
		mark = "*"
	case r.RaftEntries == 0:
		return f1(r.EntriesPerSec), "-"
	}
	return f1(r.EntriesPerSec) + mark, f2(r.RequestsPerEntry) + mark
}

func sumKind(runs []Run, kind string) int64 {
	var n int64
	for _, r := range runs {
		n += r.ErrorsByKind[kind]
	}
	return n
}

// WriteText writes the one-screen summary printed at the end of a run.
func WriteText(w io.Writer, s Summary) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tworkers\tops/s\tmean ms\tp50 ms\tp99 ms\tmax ms\terrors\tentries/s\treq/entry\t")
	for _, r := range s.Runs {
		ent, rpe := groupCommitText(r)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Workload, r.Workers, f1(r.OpsPerSec),
			f3(r.MeanMs), f3(r.P50Ms), f3(r.P99Ms), f3(r.MaxMs), ErrorsText(r), ent, rpe)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if i := s.Idle; i != nil {
		fmt.Fprintln(w)
		for _, n := range i.Nodes {
			fmt.Fprintf(w, "%s %s: CPU %.3f%% of a core, %.1f voluntary context switches/s, %d TLS handshakes, sockets %d -> %d\n",
				n.Mode, n.Name, n.CPUPercent, n.VolCtxPerSec, n.Handshakes, n.SocketsStart, n.SocketsEnd)
		}
	}
	if f := s.Failover; f != nil {
		fmt.Fprintln(w)
		for _, p := range f.Phases {
			fmt.Fprintf(w, "%s kills: %d rounds, writes resumed after p50 %.0f ms, max %.0f ms (%d rounds did not resume); %d unknown outcomes\n",
				p.Phase, p.Rounds, p.ResumeP50Ms, p.ResumeMaxMs, p.NotResumed, p.UnknownOutcomes)
		}
		a := f.Audit
		verdict := "passed"
		if !f.AuditOK {
			verdict = "FAILED"
		}
		fmt.Fprintf(w, "audit %s: %d acknowledged writes on %d nodes, %d lost, %d duplicated, %d unexpected, %d nodes differ\n",
			verdict, a.Acked, a.Nodes, a.Lost, a.Duplicated, a.Unexpected, a.Differ)
	}
	return nil
}

func writeFailoverMarkdown(b *strings.Builder, f *Failover) {
	b.WriteString("\n## Failover\n\nResume time: from the kill -9 to the end of the first successful write that started after\n" +
		"it. Caught up: from the restart until every node is healthy at the same applied index.\n\n")
	b.WriteString("| phase | rounds | resume p50 ms | resume max ms | not resumed | unknown outcomes |\n|---|---:|---:|---:|---:|---:|\n")
	for _, p := range f.Phases {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %d | %d |\n", p.Phase, p.Rounds, f1(p.ResumeP50Ms), f1(p.ResumeMaxMs), p.NotResumed, p.UnknownOutcomes)
	}
	b.WriteString("\n| phase | round | node killed | killed at s | resumed after ms | caught up after ms | errors | unknown outcomes |\n" +
		"|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, r := range f.Rounds {
		fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %d | %d |\n", r.Phase, r.Round, r.Node, f1(r.KilledAtS),
			msOrNever(r.ResumedAfterMs), msOrNever(r.CaughtUpAfterMs), r.Errors, r.UnknownOutcomes)
	}
	a := f.Audit
	verdict := "PASSED"
	if !f.AuditOK {
		verdict = "FAILED"
	}
	fmt.Fprintf(b, "\n### Audit: %s\n\n%d nodes read; %d acknowledged writes: %d lost, %d duplicated; %d rows never written; "+
		"%d nodes differ from the first. %d writes had an unknown outcome, %d of them were applied.\n",
		verdict, a.Nodes, a.Acked, a.Lost, a.Duplicated, a.Unexpected, a.Differ, a.Unknown, a.UnknownPresent)
	for _, p := range a.Problems {
		fmt.Fprintf(b, "- %s\n", p)
	}
}

func msOrNever(v float64) string {
	if v < 0 {
		return "never"
	}
	return f1(v)
}
