package main

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/tandemdb/tandem"
	"github.com/tandemdb/tandem/bench/procstat"
	"github.com/tandemdb/tandem/bench/report"
	"github.com/tandemdb/tandem/bench/sqlbench"
	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/driver"
	"github.com/tandemdb/tandem/internal/tlsconfig"
)

func runBench(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(stderr, "Usage: tandem bench BENCHMARK [flags]\n\nBenchmarks:\n"+
			"  sql       SQL workloads (kvwrite, kvread, kvreadwrite, txn) against a cluster, with a sweep over workers\n"+
			"  failover  kill -9 the leader (then a follower) under writes: time until writes resume, and an audit\n"+
			"  idle      CPU, context switches, TLS handshakes and sockets of idle nodes polled for the leader\n\n"+
			"Each run writes summary.json, report.md and PNG plots into --out. Run 'tandem bench BENCHMARK --help' for flags.")
		if len(args) == 0 {
			return usageError{"a benchmark is required: sql, failover or idle"}
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "sql":
		return runBenchSQL(ctx, args[1:], stdout, stderr)
	case "failover":
		return runBenchFailover(ctx, args[1:], stdout, stderr)
	case "idle":
		return runBenchIdle(ctx, args[1:], stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown benchmark %q: use sql, failover or idle", args[0])}
}

// benchNodes are the node processes a benchmark started itself (nil with --cluster).
type benchNodes struct {
	dir       string
	nodes     []*demoNode
	certs     string      // certificate directory when the nodes run with TLS
	clientTLS *tls.Config // the client side of that TLS, nil without
}

func (b *benchNodes) pids() map[int]string {
	out := map[int]string{}
	if b == nil {
		return out
	}
	for _, n := range b.nodes {
		if n.cmd != nil && n.cmd.Process != nil {
			out[n.cmd.Process.Pid] = fmt.Sprintf("node %d (%s)", n.id, n.addr)
		}
	}
	return out
}

func (b *benchNodes) stop() {
	for _, n := range b.nodes {
		n.signal(syscall.SIGTERM, 5*time.Second)
	}
}

// benchExecutable is the `tandem` binary whose `node` command a self-started cluster runs:
// this one (tests point it at a freshly built binary).
var benchExecutable = os.Executable

// benchClusterTLS: start the nodes with mutual TLS, with certificates made for the run in the
// cluster's directory (certs/n1.pem ... and certs/client.pem).
type benchClusterTLS bool

// startBenchCluster starts 3 `tandem node` processes of this binary on loopback, in a new
// temporary directory, and returns a client once they are 3 voters with a leader.
func startBenchCluster(ctx context.Context, stderr io.Writer, withTLS benchClusterTLS) (*benchNodes, *client.Client, error) {
	exe, err := benchExecutable()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		return nil, nil, err
	}
	addrs, err := loopbackAddrs(3)
	if err != nil {
		return nil, nil, err
	}
	b := &benchNodes{dir: dir}
	if withTLS {
		b.certs = filepath.Join(dir, "certs")
		if _, err := tlsconfig.WriteFiles(b.certs, []string{"n1", "n2", "n3", "client"}, []string{"127.0.0.1", "localhost"}, 24*time.Hour); err != nil {
			return nil, nil, err
		}
		if _, b.clientTLS, err = tandem.LoadTLS(filepath.Join(b.certs, "client.pem"), filepath.Join(b.certs, "client-key.pem"), filepath.Join(b.certs, "ca.pem")); err != nil {
			return nil, nil, err
		}
	}
	for i := range 3 {
		n := &demoNode{id: i + 1, addr: addrs[i], log: filepath.Join(dir, fmt.Sprintf("n%d.log", i+1))}
		n.args = []string{"node", "--id", fmt.Sprint(n.id), "--addr", n.addr, "--data", filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		if i > 0 {
			n.args = append(n.args, "--join", addrs[0])
		}
		if withTLS {
			name := fmt.Sprintf("n%d", i+1)
			n.args = append(n.args, "--tls-cert", filepath.Join(b.certs, name+".pem"), "--tls-key", filepath.Join(b.certs, name+"-key.pem"),
				"--tls-ca", filepath.Join(b.certs, "ca.pem"))
		}
		b.nodes = append(b.nodes, n)
	}
	fail := func(err error) (*benchNodes, *client.Client, error) {
		b.stop()
		fmt.Fprintf(stderr, "node logs are in %s\n", dir)
		return nil, nil, fmt.Errorf("starting a 3-node cluster: %w", err)
	}
	fmt.Fprintf(stderr, "starting a 3-node cluster on %s (data in %s)\n", strings.Join(addrs, ","), dir)
	if err := b.nodes[0].start(exe); err != nil {
		return fail(err)
	}
	c, err := waitClient(ctx, addrs, b.clientTLS, 20*time.Second)
	if err != nil {
		return fail(err)
	}
	for _, n := range b.nodes[1:] {
		if err := n.start(exe); err != nil {
			c.Close()
			return fail(err)
		}
	}
	if err := waitVoters(ctx, c, 3, 30*time.Second); err != nil {
		c.Close()
		return fail(err)
	}
	return b, c, nil
}

func runBenchSQL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench sql", "[--cluster HOST:PORT,...] [--workload W,...] [--workers N | --sweep N,N,...] [flags]",
		"Measures SQL throughput and latency on the table model(key TEXT, value TEXT, UNIQUE(key)), like\n"+
			"dqlite-benchmark. Workloads: kvwrite (INSERT OR REPLACE), kvread (SELECT value FROM model WHERE\n"+
			"key=? over keys written first), kvreadwrite (50/50), txn (interactive: read, then update, commit);\n"+
			"\"all\" runs the four. Each worker has its own connection. With --sweep every workload runs at each\n"+
			"worker count in turn. Without --cluster it starts a 3-node cluster of this binary on loopback.\n"+
			"Writes summary.json, report.md and PNG plots into --out, prints progress every second on\n"+
			"standard error and a summary table at the end.", stderr)
	cf := addClientFlags(fs)
	// The cluster is optional here, and --timeout bounds connecting and each operation, not the
	// whole (long) command.
	*cf.cluster = ""
	fs.Lookup("cluster").DefValue = ""
	fs.Lookup("cluster").Usage = "comma-separated node addresses of a running cluster (default: start a 3-node cluster)"
	fs.Lookup("timeout").Usage = "time limit to reach the cluster, and of each operation"
	workload := fs.String("workload", "kvwrite", "workloads, comma-separated: kvwrite, kvread, kvreadwrite, txn, or all")
	workers := fs.Int("workers", 8, "concurrent workers, each with its own connection")
	sweep := fs.String("sweep", "", "worker counts to run in turn, e.g. 1,2,4,8,9,16 (overrides --workers)")
	duration := fs.Duration("duration", 10*time.Second, "measured time of each run")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before each run")
	keySize := fs.Int("key-size", 32, "bytes per key")
	valueSize := fs.Int("value-size", 1024, "bytes per value")
	keys := fs.Int("keys", 10000, "key space: keys are drawn from this many (reading workloads write them all first)")
	consistency := fs.String("consistency", "linearizable", "reads: linearizable, leader or stale")
	dbName := fs.String("db", "bench", "database name")
	out := fs.String("out", "", "results directory (default: bench-sql-YYYYMMDD-HHMMSS)")
	noPrepare := fs.Bool("no-prepare", false, "send SQL text with every operation instead of prepared statements")
	keep := fs.Bool("keep", false, "keep the data directory of a self-started cluster")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{fmt.Sprintf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	workloads, err := sqlbench.ParseWorkloads(*workload)
	if err != nil {
		return usageError{"--workload: " + err.Error()}
	}
	counts := []int{*workers}
	if *sweep != "" {
		if counts, err = sqlbench.ParseCounts(*sweep); err != nil {
			return usageError{"--sweep: " + err.Error()}
		}
	} else if *workers < 1 {
		return usageError{"--workers must be at least 1"}
	}
	if *duration <= 0 || *warmup < 0 || *cf.timeout <= 0 {
		return usageError{"--duration and --timeout must be positive and --warmup not negative"}
	}
	if *keys < 1 || *valueSize < 0 {
		return usageError{"--keys must be at least 1 and --value-size not negative"}
	}
	if _, err := driver.ParseConsistency(*consistency); err != nil || *consistency == "" {
		return usageError{"--consistency must be linearizable, leader or stale"}
	}
	base := sqlbench.Config{
		Workers: counts[0], Duration: *duration, Warmup: *warmup, OpTimeout: *cf.timeout,
		KeySize: *keySize, ValueSize: *valueSize, Keys: *keys, NoPrepare: *noPrepare,
	}
	if err := base.Validate(); err != nil {
		return usageError{err.Error()}
	}
	if strings.ContainsAny(*dbName, "/?#") || *dbName == "" {
		return usageError{"--db must be a plain name"}
	}
	sum, outDir := newBenchSummary("sql", fs, args, *out)

	// The cluster: given, or started here.
	var nodes *benchNodes
	var c *client.Client
	addrs := splitList(*cf.cluster)
	if len(addrs) == 0 {
		if cf.tls.enabled() {
			return usageError{"the --tls-* flags need --cluster (a self-started cluster runs without TLS)"}
		}
		nodes, c, err = startBenchCluster(ctx, stderr, false)
		if err != nil {
			return err
		}
		defer func() {
			nodes.stop()
			if !*keep {
				os.RemoveAll(nodes.dir)
			} else {
				fmt.Fprintf(stderr, "cluster data kept in %s\n", nodes.dir)
			}
		}()
		for _, n := range nodes.nodes {
			addrs = append(addrs, n.addr)
		}
		sum.Params["cluster"] = "self-started, 3 nodes: " + strings.Join(addrs, ",")
	} else {
		cctx, cancel := context.WithTimeout(ctx, *cf.timeout)
		c, err = cf.connect(cctx)
		cancel()
		if err != nil {
			return err
		}
	}
	defer c.Close()
	statusAddrs := addrs
	if ci, err := c.Cluster(ctx); err == nil && len(ci.Members) > 0 {
		statusAddrs = nil
		for _, m := range ci.Members {
			statusAddrs = append(statusAddrs, m.Addr)
		}
	}

	dcfg, err := driver.ParseDSN("tandem://" + strings.Join(addrs, ",") + "/" + *dbName + "?consistency=" + *consistency)
	if err != nil {
		return usageError{err.Error()}
	}
	dcfg.Client.Name = "tandem-bench"
	if cf.tls.enabled() {
		_, tc, err := tandem.LoadTLS(*cf.tls.cert, *cf.tls.key, *cf.tls.ca)
		if err != nil {
			return usageError{err.Error()}
		}
		dcfg.Client.TLS = tc
	}
	connector, err := driver.NewConnector(dcfg)
	if err != nil {
		return usageError{err.Error()}
	}
	db := sql.OpenDB(connector)
	defer db.Close()

	base.DB = db
	base.Status = sqlbench.NodeCounters(c, statusAddrs)
	pr := newProgressPrinter(stderr, *duration)
	base.Progress = pr.print

	pids := nodes.pids()
	var runErr error
loop:
	for _, wl := range workloads {
		cfg := base
		cfg.Workload = wl
		fmt.Fprintf(stderr, "%s: setting up", wl)
		if wl != sqlbench.KVWrite {
			fmt.Fprintf(stderr, " (writing the %d keys unless present)", *keys)
		}
		fmt.Fprintln(stderr)
		if err := sqlbench.Setup(ctx, cfg); err != nil {
			runErr = fmt.Errorf("%s: setup: %w", wl, err)
			break
		}
		cfg.SkipSetup = true
		for _, n := range counts {
			cfg.Workers = n
			stopWatch := make(chan struct{})
			usage := make(chan map[int]procstat.Usage, 1)
			go func() { usage <- procstat.Watch(keysOf(pids), time.Second, stopWatch) }()
			res, err := sqlbench.Run(ctx, cfg)
			close(stopWatch)
			pr.done()
			run := res.Report()
			for pid, u := range <-usage {
				run.Nodes = append(run.Nodes, report.Node{Name: pids[pid], Usage: u})
			}
			sort.Slice(run.Nodes, func(i, j int) bool { return run.Nodes[i].Name < run.Nodes[j].Name })
			if res.Stats.Duration > 0 {
				sum.Runs = append(sum.Runs, run)
				fmt.Fprintf(stderr, "%s, %d workers: %.1f ops/s, p50 %.3f ms, p99 %.3f ms, errors %s\n",
					wl, n, run.OpsPerSec, run.P50Ms, run.P99Ms, report.ErrorsText(run))
			}
			if err != nil {
				runErr = fmt.Errorf("%s with %d workers: %w", wl, n, err)
				break loop
			}
		}
	}
	if len(sum.Runs) == 0 {
		return runErr
	}
	return errors.Join(runErr, finishBenchReport(outDir, &sum, runErr, stdout))
}

// finishBenchReport stamps the end of a benchmark (and why it stopped early, if it did),
// writes its results folder and prints the one-screen summary.
func finishBenchReport(outDir string, sum *report.Summary, runErr error, stdout io.Writer) error {
	sum.Finished = time.Now().UTC()
	if runErr != nil {
		sum.Notes = append(sum.Notes, "stopped early: "+runErr.Error())
	}
	files, err := report.Write(outDir, *sum)
	if err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	fmt.Fprintln(stdout)
	if err := report.WriteText(stdout, *sum); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%d files in %s (report.md, summary.json, plots)\n", len(files), outDir)
	return nil
}

func keysOf(m map[int]string) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// progressPrinter shows a run's progress: one line rewritten in place on a terminal, else a
// line every 5 seconds.
type progressPrinter struct {
	w        io.Writer
	tty      bool
	duration time.Duration
	n        int
	pending  bool
}

func newProgressPrinter(w io.Writer, d time.Duration) *progressPrinter {
	p := &progressPrinter{w: w, duration: d}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progressPrinter) print(pr sqlbench.Progress) {
	p.n++
	var line string
	if pr.Warmup {
		line = fmt.Sprintf("%s, %d workers: warming up (%.0fs)", pr.Name, pr.Workers, pr.Elapsed.Seconds())
	} else {
		line = fmt.Sprintf("%s, %d workers: %5.1fs/%v  %9.1f ops/s  ops %d  errors %d",
			pr.Name, pr.Workers, pr.Elapsed.Seconds(), p.duration, pr.OpsPerSec, pr.Ops, pr.Errors)
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\033[K", line)
		p.pending = true
	} else if p.n%5 == 0 {
		fmt.Fprintln(p.w, line)
	}
}

// done ends the progress line of a run.
func (p *progressPrinter) done() {
	if p.pending {
		fmt.Fprint(p.w, "\r\033[K")
	}
	p.pending = false
	p.n = 0
}

// parseChoices splits a comma-separated flag value whose items must be among allowed.
func parseChoices(flagName, value string, allowed ...string) ([]string, error) {
	items := splitList(value)
	if len(items) == 0 {
		return nil, usageError{fmt.Sprintf("--%s: give one or more of %s", flagName, strings.Join(allowed, ", "))}
	}
	for _, it := range items {
		if !slices.Contains(allowed, it) {
			return nil, usageError{fmt.Sprintf("--%s: unknown value %q (%s)", flagName, it, strings.Join(allowed, ", "))}
		}
	}
	return items, nil
}

// newBenchSummary starts the summary of a benchmark run: its command line, the machine, the
// effective flag values, and the results directory (--out, or bench-NAME-YYYYMMDD-HHMMSS).
func newBenchSummary(name string, fs *flag.FlagSet, args []string, out string) (report.Summary, string) {
	started := time.Now()
	if out == "" {
		out = "bench-" + name + "-" + started.Format("20060102-150405")
	}
	params := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) { params[f.Name] = f.Value.String() })
	return report.Summary{
		Benchmark: name, Command: report.CommandLine(append([]string{"tandem", "bench", name}, args...)),
		Started: started.UTC(), Machine: report.ThisMachine(), Params: params,
	}, out
}
