package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tandemdb/tandem/bench/failover"
	"github.com/tandemdb/tandem/bench/report"
	"github.com/tandemdb/tandem/bench/sqlbench"
	"github.com/tandemdb/tandem/bench/stats"
	"github.com/tandemdb/tandem/client"
)

const failoverDB = "failover"

// The table has no key: a write applied twice shows as two rows.
const failoverSchema = `CREATE TABLE IF NOT EXISTS writes(worker INTEGER NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL)`

func runBenchFailover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench failover", "[--rounds N] [--workers N] [--phases leader,follower] [flags]",
		"Measures recovery from node crashes. It starts a 3-node cluster of this binary on loopback;\n"+
			"--workers writers insert unique rows (worker, seq) without pause. Each round waits --settle,\n"+
			"kill -9s a node (the leader in the leader phase, a follower in the follower phase), waits until\n"+
			"a write started after the kill succeeds, restarts the node from its data directory and waits\n"+
			"until it has caught up. At the end every node's rows are audited against the acknowledged\n"+
			"writes: each must be present exactly once on every node, a write with an unknown outcome at\n"+
			"most once. The exit status is 1 if the audit fails. Writes summary.json, report.md and a\n"+
			"timeline per phase (kills and restarts marked) into --out.", stderr)
	rounds := fs.Int("rounds", 3, "kills per phase")
	workers := fs.Int("workers", 4, "concurrent writers")
	phases := fs.String("phases", "leader,follower", "phases in order: leader, follower, or both comma-separated")
	settle := fs.Duration("settle", 2*time.Second, "steady writing before each kill")
	resumeTimeout := fs.Duration("resume-timeout", 30*time.Second, "give up waiting for writes to resume after a kill")
	catchUpTimeout := fs.Duration("catch-up-timeout", 60*time.Second, "give up waiting for a restarted node to catch up")
	opTimeout := fs.Duration("timeout", 10*time.Second, "time limit of each write (the client retries within it)")
	out := fs.String("out", "", "results directory (default: bench-failover-YYYYMMDD-HHMMSS)")
	keep := fs.Bool("keep", false, "keep the cluster's data directory")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	if *rounds < 1 || *workers < 1 {
		return usageError{"--rounds and --workers must be at least 1"}
	}
	if *settle < 0 || *resumeTimeout <= 0 || *catchUpTimeout <= 0 || *opTimeout <= 0 {
		return usageError{"--resume-timeout, --catch-up-timeout and --timeout must be positive, --settle not negative"}
	}
	phaseList, err := parseChoices("phases", *phases, "leader", "follower")
	if err != nil {
		return err
	}
	exe, err := benchExecutable()
	if err != nil {
		return err
	}
	sum, outDir := newBenchSummary("failover", fs, args, *out)
	sum.Failover = &report.Failover{}

	nodes, c, err := startBenchCluster(ctx, stderr, false)
	if err != nil {
		return err
	}
	defer func() {
		c.Close()
		nodes.stop()
		if !*keep {
			os.RemoveAll(nodes.dir)
		} else {
			fmt.Fprintf(stderr, "cluster data kept in %s\n", nodes.dir)
		}
	}()
	var addrs []string
	for _, n := range nodes.nodes {
		addrs = append(addrs, n.addr)
	}
	sum.Params["cluster"] = "self-started, 3 nodes: " + strings.Join(addrs, ",")
	if _, err := c.Exec(ctx, failoverDB, failoverSchema); err != nil {
		return fmt.Errorf("creating the table: %w", err)
	}

	b := &failoverBench{
		c: c, nodes: nodes, exe: exe, ledger: failover.NewLedger(), workers: *workers, opTimeout: *opTimeout,
		settle: *settle, resumeTimeout: *resumeTimeout, catchUpTimeout: *catchUpTimeout,
		progress: newProgressPrinter(stderr, 0), stderr: stderr,
	}
	var runErr error
	for i, phase := range phaseList {
		run, phaseRounds, err := b.runPhase(ctx, phase, i, *rounds)
		sum.Runs = append(sum.Runs, run)
		sum.Failover.Rounds = append(sum.Failover.Rounds, phaseRounds...)
		sum.Failover.Phases = append(sum.Failover.Phases, phaseSummary(phase, phaseRounds))
		if err != nil {
			runErr = fmt.Errorf("%s phase: %w", phase, err)
			break
		}
	}

	// The audit: every node's rows once all nodes run and agree.
	fmt.Fprintln(stderr, "audit: waiting for the nodes to converge, then reading every node's rows")
	for _, n := range nodes.nodes {
		if n.cmd == nil { // a node left down by an aborted round
			if err := n.start(exe); err != nil {
				runErr = errors.Join(runErr, err)
			}
		}
	}
	if err := waitSettled(ctx, c, *catchUpTimeout); err != nil {
		sum.Notes = append(sum.Notes, "the nodes did not settle before the audit: "+err.Error())
	}
	rows := map[string]map[failover.Key]int{}
	for _, n := range nodes.nodes {
		r, err := readFailoverRows(ctx, c, n.addr)
		if err != nil {
			sum.Notes = append(sum.Notes, fmt.Sprintf("node %d (%s) could not be read for the audit: %v", n.id, n.addr, err))
			continue
		}
		rows[fmt.Sprintf("node %d", n.id)] = r
	}
	sum.Failover.Audit = b.ledger.Check(rows)
	if len(rows) < len(nodes.nodes) {
		sum.Failover.Audit.Problems = append(sum.Failover.Audit.Problems, "not every node could be read")
	}
	sum.Failover.AuditOK = sum.Failover.Audit.OK() && len(rows) == len(nodes.nodes)
	if err := finishBenchReport(outDir, &sum, runErr, stdout); err != nil {
		return errors.Join(runErr, err)
	}
	if !sum.Failover.AuditOK {
		return errors.Join(runErr, fmt.Errorf("the audit failed: %+v", sum.Failover.Audit))
	}
	return runErr
}

// failoverBench is the state of one tandem bench failover invocation.
type failoverBench struct {
	c              *client.Client
	nodes          *benchNodes
	exe            string
	ledger         *failover.Ledger
	workers        int
	opTimeout      time.Duration
	settle         time.Duration
	resumeTimeout  time.Duration
	catchUpTimeout time.Duration
	progress       *progressPrinter
	stderr         io.Writer
}

// phaseWriters are the writers of one phase and what they counted.
type phaseWriters struct {
	b       *failoverBench
	rec     *stats.Recorder
	tracker failover.Tracker
	errors  atomic.Int64
	unknown atomic.Int64 // failed writes that may have been applied
}

// write runs one writer until ctx ends. Worker ids are unique across phases.
func (w *phaseWriters) write(ctx context.Context, worker int64) {
	for seq := int64(0); ctx.Err() == nil; seq++ {
		k := failover.Key{Worker: worker, Seq: seq}
		start := time.Now()
		octx, cancel := context.WithTimeout(ctx, w.b.opTimeout)
		_, err := w.b.c.Exec(octx, failoverDB, `INSERT INTO writes(worker, seq, at) VALUES (?, ?, datetime('now'))`, worker, seq)
		cancel()
		end := time.Now()
		if err == nil {
			w.b.ledger.Acked(k)
			w.rec.Record(end, end.Sub(start))
			w.tracker.Success(start, end)
			continue
		}
		// A failed write may still have been applied (the client retries with one request id,
		// so at most once): the audit allows it zero or one time.
		w.b.ledger.Unknown(k)
		if ctx.Err() != nil {
			return // stopped by the benchmark, not an error of the cluster
		}
		kind := w.rec.RecordError(end, err)
		w.errors.Add(1)
		if kind == stats.KindOutcomeUnknown || kind == stats.KindDeadline {
			w.unknown.Add(1)
		}
		select { // do not spin while no node answers
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return
		}
	}
}

// runPhase runs the writers through rounds kills of one kind of node.
func (b *failoverBench) runPhase(ctx context.Context, phase string, index, rounds int) (report.Run, []report.FailoverRound, error) {
	name := "failover-" + phase
	start := time.Now()
	w := &phaseWriters{b: b, rec: stats.NewRecorder(start)}
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range b.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.write(wctx, int64(index*10000+i))
		}()
	}
	stopProgress := make(chan struct{})
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				b.progress.print(sqlbench.Progress{Name: name, Workers: b.workers, Progress: w.rec.Progress(now)})
			case <-stopProgress:
				return
			}
		}
	}()
	var (
		events []report.Event
		out    []report.FailoverRound
		err    error
	)
	say := func(format string, args ...any) {
		b.progress.done()
		fmt.Fprintf(b.stderr, format+"\n", args...)
	}
	for r := 1; r <= rounds && err == nil; r++ {
		if err = sleepCtx(ctx, b.settle); err != nil {
			break
		}
		var target *demoNode
		if target, err = b.pickTarget(ctx, phase, r); err != nil {
			break
		}
		round := report.FailoverRound{Phase: phase, Round: r, Node: fmt.Sprintf("node %d", target.id), ResumedAfterMs: -1, CaughtUpAfterMs: -1}
		errs0, unknown0 := w.errors.Load(), w.unknown.Load()
		killedAt := time.Now()
		target.signal(syscall.SIGKILL, 5*time.Second)
		w.tracker.Killed(killedAt)
		round.KilledAtS = killedAt.Sub(start).Seconds()
		events = append(events, report.Event{AtS: round.KilledAtS, Label: fmt.Sprintf("kill -9 node %d", target.id)})
		say("%s, round %d: killed node %d (%s) at %.1fs", name, r, target.id, phase, round.KilledAtS)

		deadline := time.Now().Add(b.resumeTimeout)
		for ctx.Err() == nil && time.Now().Before(deadline) {
			if d, ok := w.tracker.Resumed(); ok {
				round.ResumedAfterMs = float64(d.Microseconds()) / 1000
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if round.ResumedAfterMs < 0 {
			say("%s, round %d: writes did not resume within %v", name, r, b.resumeTimeout)
		}

		if err = target.start(b.exe); err != nil {
			break
		}
		restartedAt := time.Now()
		events = append(events, report.Event{AtS: restartedAt.Sub(start).Seconds(), Label: fmt.Sprintf("restart node %d", target.id)})
		if cerr := b.waitCaughtUp(ctx, target); cerr == nil {
			round.CaughtUpAfterMs = float64(time.Since(restartedAt).Microseconds()) / 1000
		} else {
			say("%s, round %d: %v", name, r, cerr)
		}
		round.Errors, round.UnknownOutcomes = w.errors.Load()-errs0, w.unknown.Load()-unknown0
		out = append(out, round)
		say("%s, round %d: writes resumed after %s ms, node %d caught up %s ms after its restart; %d errors, %d unknown outcomes",
			name, r, msText(round.ResumedAfterMs), target.id, msText(round.CaughtUpAfterMs), round.Errors, round.UnknownOutcomes)
	}
	if err == nil {
		err = sleepCtx(ctx, b.settle) // the timeline shows the cluster after the last recovery too
	}
	stopWriters()
	wg.Wait()
	close(stopProgress)
	<-progressDone
	b.progress.done()
	run := report.FromStats(name, b.workers, w.rec.Finish(time.Now()))
	run.Events = events
	run.StatusError = "not measured by bench failover (restarted nodes start their counters again)"
	return run, out, err
}

func msText(v float64) string {
	if v < 0 {
		return "never"
	}
	return fmt.Sprintf("%.0f", v)
}

// pickTarget returns the leader (leader phase) or a follower, a different one each round.
func (b *failoverBench) pickTarget(ctx context.Context, phase string, round int) (*demoNode, error) {
	lctx, cancel := context.WithTimeout(ctx, b.resumeTimeout)
	defer cancel()
	for {
		li, err := b.c.Leader(lctx)
		if err == nil && li.ID != 0 {
			var followers []*demoNode
			for _, n := range b.nodes.nodes {
				if uint64(n.id) == li.ID && phase == "leader" {
					return n, nil
				}
				if uint64(n.id) != li.ID && n.cmd != nil {
					followers = append(followers, n)
				}
			}
			if phase == "follower" && len(followers) > 0 {
				return followers[round%len(followers)], nil
			}
		}
		if lctx.Err() != nil {
			return nil, fmt.Errorf("no leader to pick a node from: %w", errors.Join(err, lctx.Err()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitCaughtUp waits until the restarted node is healthy and has applied at least what the
// leader had applied when it was asked (the writes go on, so the indexes never stand still).
func (b *failoverBench) waitCaughtUp(ctx context.Context, n *demoNode) error {
	ctx, cancel := context.WithTimeout(ctx, b.catchUpTimeout)
	defer cancel()
	var target uint64
	for {
		if target == 0 {
			if li, err := b.c.Leader(ctx); err == nil && li.Addr != "" {
				if st, err := b.c.Status(ctx, li.Addr); err == nil && st.ID != uint64(n.id) {
					target = st.Applied
				}
			}
		}
		if target != 0 {
			sctx, scancel := context.WithTimeout(ctx, time.Second)
			st, err := b.c.Status(sctx, n.addr)
			scancel()
			if err == nil && st.Healthy && st.Applied >= target {
				return nil
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("node %d did not catch up within %v", n.id, b.catchUpTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// phaseSummary condenses the rounds of one phase.
func phaseSummary(phase string, rounds []report.FailoverRound) report.FailoverPhase {
	p := report.FailoverPhase{Phase: phase, Rounds: len(rounds)}
	var resumed []float64
	for _, r := range rounds {
		p.UnknownOutcomes += r.UnknownOutcomes
		if r.ResumedAfterMs < 0 {
			p.NotResumed++
			continue
		}
		resumed = append(resumed, r.ResumedAfterMs)
	}
	if len(resumed) > 0 {
		slices.Sort(resumed)
		p.ResumeP50Ms = median(resumed)
		p.ResumeMaxMs = resumed[len(resumed)-1]
	}
	return p
}

// median of sorted values: the middle one, or the mean of the two middle ones.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// readFailoverRows reads one node's own copy of the rows (stale read on that node).
func readFailoverRows(ctx context.Context, c *client.Client, addr string) (map[failover.Key]int, error) {
	rows, err := c.Query(ctx, failoverDB, `SELECT worker, seq, count(*) FROM writes GROUP BY worker, seq`,
		client.QueryOptions{Consistency: client.Stale, Node: addr})
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[failover.Key]int{}
	for {
		row, err := rows.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		w, _ := row[0].(int64)
		s, _ := row[1].(int64)
		n, _ := row[2].(int64)
		out[failover.Key{Worker: w, Seq: s}] = int(n)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitSettled waits until every node is healthy at one applied index that has not moved for
// half a second: writes the benchmark gave up on may still be queued on the leader when the
// writers stop, and the audit must read every node after the last of them.
func waitSettled(ctx context.Context, c *client.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last uint64
	var since time.Time
	for {
		rows, err := listMembers(ctx, c)
		same := err == nil && len(rows) > 0 && rows[0].Applied != nil
		for _, r := range rows {
			same = same && r.Healthy && r.Applied != nil && *r.Applied == *rows[0].Applied
		}
		switch {
		case !same:
			since = time.Time{}
		case since.IsZero() || *rows[0].Applied != last:
			last, since = *rows[0].Applied, time.Now()
		case time.Since(since) >= 500*time.Millisecond:
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the nodes did not settle at one applied index in %v: %+v %v", timeout, rows, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
