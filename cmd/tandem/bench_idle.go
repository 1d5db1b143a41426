package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemdb/tandem/bench/procstat"
	"github.com/tandemdb/tandem/bench/report"
	"github.com/tandemdb/tandem/bench/stats"
	"github.com/tandemdb/tandem/client"
)

func runBenchIdle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench idle", "[--duration 60s] [--interval 3s] [--modes tls,plaintext] [flags]",
		"Measures what an idle cluster costs while its users look up the leader, the way applications\n"+
			"embedding dqlite do. For each mode it starts a 3-node cluster of this binary on loopback (with\n"+
			"mutual TLS, certificates made for the run, or in plaintext) and one poller per node that every\n"+
			"--interval asks that node for the leader and then the leader for its status. Over --duration it\n"+
			"reports per node process: CPU (utime+stime from /proc) as a percentage of one core, voluntary\n"+
			"context switches per second summed over all threads, TLS handshakes completed, and open\n"+
			"sockets at the start and the end. Writes summary.json and report.md into --out.", stderr)
	duration := fs.Duration("duration", 60*time.Second, "measured time per mode")
	interval := fs.Duration("interval", 3*time.Second, "time between two lookups of each poller")
	modes := fs.String("modes", "tls,plaintext", "modes in order: tls, plaintext, or both comma-separated")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time after the pollers start")
	out := fs.String("out", "", "results directory (default: bench-idle-YYYYMMDD-HHMMSS)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	if *duration <= 0 || *interval <= 0 || *warmup < 0 {
		return usageError{"--duration and --interval must be positive, --warmup not negative"}
	}
	modeList, err := parseChoices("modes", *modes, "tls", "plaintext")
	if err != nil {
		return err
	}
	sum, outDir := newBenchSummary("idle", fs, args, *out)
	sum.Idle = &report.Idle{IntervalS: interval.Seconds()}
	var runErr error
	for _, mode := range modeList {
		run, nodes, err := idleMode(ctx, mode, *duration, *interval, *warmup, stderr)
		if err != nil {
			runErr = fmt.Errorf("%s: %w", mode, err)
			break
		}
		sum.Runs = append(sum.Runs, run)
		sum.Idle.Nodes = append(sum.Idle.Nodes, nodes...)
	}
	if len(sum.Runs) == 0 {
		return runErr
	}
	return errors.Join(runErr, finishBenchReport(outDir, &sum, runErr, stdout))
}

// idleMode measures one cluster (TLS or plaintext) for duration.
func idleMode(ctx context.Context, mode string, duration, interval, warmup time.Duration, stderr io.Writer) (report.Run, []report.IdleNode, error) {
	nodes, c, err := startBenchCluster(ctx, stderr, benchClusterTLS(mode == "tls"))
	if err != nil {
		return report.Run{}, nil, err
	}
	defer func() {
		c.Close()
		nodes.stop()
		os.RemoveAll(nodes.dir)
	}()
	name := "idle-" + mode

	// One poller per node, each with its own client that knows only that node.
	pctx, stopPollers := context.WithCancel(ctx)
	defer stopPollers()
	rec := stats.NewRecorder(time.Now().Add(warmup))
	measuring := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range nodes.nodes {
		pc, err := client.New(ctx, client.Config{Addrs: []string{n.addr}, TLS: nodes.clientTLS, Name: "tandem-bench-idle"})
		if err != nil {
			return report.Run{}, nil, fmt.Errorf("poller of node %d: %w", n.id, err)
		}
		defer pc.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			pollLeader(pctx, pc, interval, rec, measuring)
		}()
	}
	fmt.Fprintf(stderr, "%s: %d pollers started, warming up for %v\n", name, len(nodes.nodes), warmup)
	if err := sleepCtx(ctx, warmup); err != nil {
		return report.Run{}, nil, err
	}

	// Start of the measured period: the status connections of c exist before the sample.
	before, err := idleSample(ctx, c, nodes)
	if err == nil {
		before, err = idleSample(ctx, c, nodes)
	}
	if err != nil {
		return report.Run{}, nil, err
	}
	close(measuring)
	stopWatch := make(chan struct{})
	usage := make(chan map[int]procstat.Usage, 1)
	pids := nodes.pids()
	go func() { usage <- procstat.Watch(keysOf(pids), time.Second, stopWatch) }()
	fmt.Fprintf(stderr, "%s: measuring for %v\n", name, duration)
	deadline := time.Now().Add(duration)
	for time.Now().Before(deadline) {
		if err := sleepCtx(ctx, min(5*time.Second, time.Until(deadline))); err != nil {
			close(stopWatch)
			<-usage
			return report.Run{}, nil, err
		}
		p := rec.Progress(time.Now())
		fmt.Fprintf(stderr, "%s: %5.0fs/%v  lookups %d  errors %d\n", name, p.Elapsed.Seconds(), duration, p.Ops, p.Errors)
	}
	close(stopWatch)
	use := <-usage
	after, err := idleSample(ctx, c, nodes)
	if err != nil {
		return report.Run{}, nil, err
	}
	stopPollers()
	wg.Wait()

	run := report.FromStats(name, len(nodes.nodes), rec.Finish(time.Now()))
	run.StatusError = "not measured by bench idle (no writes)"
	var out []report.IdleNode
	for _, n := range nodes.nodes {
		pid := n.cmd.Process.Pid
		u := use[pid]
		run.Nodes = append(run.Nodes, report.Node{Name: pids[pid], Usage: u})
		out = append(out, report.IdleNode{
			Mode: mode, Name: pids[pid], CPUPercent: u.CPUPercent, VolCtxPerSec: u.VolCtxPerSec,
			Handshakes:   after[n.id].handshakes - before[n.id].handshakes,
			SocketsStart: before[n.id].sockets, SocketsEnd: after[n.id].sockets,
		})
	}
	sort.Slice(run.Nodes, func(i, j int) bool { return run.Nodes[i].Name < run.Nodes[j].Name })
	return run, out, nil
}

// pollLeader asks its node for the leader, then the leader for its status, every interval;
// lookups count in rec once measuring is closed.
func pollLeader(ctx context.Context, c *client.Client, interval time.Duration, rec *stats.Recorder, measuring <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		start := time.Now()
		li, err := c.Leader(ctx)
		if err == nil {
			_, err = c.Status(ctx, li.Addr)
		}
		end := time.Now()
		select {
		case <-measuring:
			if err == nil {
				rec.Record(end, end.Sub(start))
			} else if ctx.Err() == nil {
				rec.RecordError(end, err)
			}
		default:
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

type idleCounters struct {
	handshakes uint64
	sockets    int
}

// idleSample reads each node's TLS handshake counter and its open sockets.
func idleSample(ctx context.Context, c *client.Client, nodes *benchNodes) (map[int]idleCounters, error) {
	out := map[int]idleCounters{}
	for _, n := range nodes.nodes {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, err := c.Status(sctx, n.addr)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("status of node %d: %w", n.id, err)
		}
		ps, err := procstat.Read(n.cmd.Process.Pid)
		if err != nil {
			return nil, fmt.Errorf("node %d process: %w", n.id, err)
		}
		out[n.id] = idleCounters{handshakes: st.Handshakes, sockets: ps.Sockets}
	}
	return out, nil
}
