package main

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tandemdb/tandem/client"
	_ "github.com/tandemdb/tandem/driver" // registers "tandem" with database/sql
)

// demoNode is one `tandem node` process started by the demo.
type demoNode struct {
	id   int
	addr string
	args []string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (n *demoNode) start(exe string) error {
	f, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, n.args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start node %d: %w", n.id, err)
	}
	n.cmd, n.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(n.done) }()
	return nil
}

func (n *demoNode) signal(sig syscall.Signal, wait time.Duration) {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(wait):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
	n.cmd = nil
}

func runDemo(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "[--keep]",
		"Starts a 3-node cluster of `tandem node` processes on 127.0.0.1 in a temporary directory,\n"+
			"writes with 8 concurrent writers and an interactive transaction, kills the leader with SIGKILL,\n"+
			"keeps writing on the new leader, restarts the old one, and shows that every node holds the same\n"+
			"rows. With --keep the cluster stays up until Ctrl-C.", stderr)
	keep := fs.Bool("keep", false, "keep the cluster running until interrupted")
	writers := fs.Int("writers", 8, "concurrent writers")
	rows := fs.Int("rows", 100, "rows each writer inserts per phase")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := noArgs(fs); err != nil {
		return err
	}
	if *writers < 1 || *writers > 1000 {
		return usageError{fmt.Sprintf("--writers must be between 1 and 1000, not %d", *writers)}
	}
	if *rows < 1 {
		return usageError{fmt.Sprintf("--rows must be at least 1, not %d", *rows)}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "tandem-demo-")
	if err != nil {
		return err
	}
	addrs, err := loopbackAddrs(3)
	if err != nil {
		return err
	}
	nodes := make([]*demoNode, 3)
	for i := range nodes {
		n := &demoNode{id: i + 1, addr: addrs[i], log: filepath.Join(dir, fmt.Sprintf("n%d.log", i+1))}
		n.args = []string{"node", "--id", fmt.Sprint(n.id), "--addr", n.addr, "--data", filepath.Join(dir, fmt.Sprintf("n%d", i+1))}
		if i > 0 {
			n.args = append(n.args, "--join", addrs[0])
		}
		nodes[i] = n
	}
	ok := false
	defer func() {
		for _, n := range nodes {
			n.signal(syscall.SIGTERM, 5*time.Second)
		}
		if ok && !*keep {
			os.RemoveAll(dir)
		} else if !ok {
			fmt.Fprintf(stderr, "node logs are in %s\n", dir)
		}
	}()
	start := time.Now()
	step := func(format string, a ...any) {
		fmt.Fprintf(stdout, "[%6.2fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}

	step("starting node 1 (bootstraps a new cluster) at %s; data in %s", nodes[0].addr, dir)
	if err := nodes[0].start(exe); err != nil {
		return err
	}
	c, err := waitClient(ctx, addrs, nil, 20*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, n := range nodes[1:] {
		step("starting node %d at %s (joins via %s)", n.id, n.addr, addrs[0])
		if err := n.start(exe); err != nil {
			return err
		}
	}
	if err := waitVoters(ctx, c, 3, 30*time.Second); err != nil {
		return err
	}
	step("3 voters, cluster ready")
	if err := printMembers(ctx, c, stdout); err != nil {
		return err
	}

	db, err := sql.Open("tandem", "tandem://"+strings.Join(addrs, ",")+"/demo")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(*writers)
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY AUTOINCREMENT, writer INTEGER, n INTEGER, at TEXT DEFAULT (strftime('%Y-%m-%d %H:%M:%f','now')), payload BLOB)`); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	phase := func(name string) error {
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, *writers)
		for w := range *writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range *rows {
					if _, err := db.ExecContext(ctx, `INSERT INTO events(writer, n, payload) VALUES (?, ?, randomblob(64))`, w, i); err != nil {
						errs <- fmt.Errorf("writer %d: %w", w, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		d := time.Since(t0)
		step("%s: %d writers inserted %d rows in %v (%.0f rows/s)", name, *writers, *writers**rows, d.Round(time.Millisecond), float64(*writers**rows)/d.Seconds())
		return nil
	}
	if err := phase("phase 1"); err != nil {
		return err
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	var total int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM events`).Scan(&total); err != nil {
		tx.Rollback()
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO events(writer, n) VALUES (-1, ?)`, total); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	step("interactive transaction: read count=%d, inserted a summary row, committed", total)

	li, err := c.Leader(ctx)
	if err != nil {
		return err
	}
	victim := nodes[li.ID-1]
	step("killing the leader, node %d, with SIGKILL", victim.id)
	killed := time.Now()
	victim.signal(syscall.SIGKILL, time.Second)
	for {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := db.ExecContext(wctx, `INSERT INTO events(writer, n) VALUES (-2, 0)`)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || time.Since(killed) > 30*time.Second {
			return fmt.Errorf("no write succeeded within 30s of the leader kill: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	li2, _ := c.Leader(ctx)
	step("first write after the kill succeeded %v later; node %d leads now", time.Since(killed).Round(time.Millisecond), li2.ID)
	if err := phase("phase 2 (two nodes)"); err != nil {
		return err
	}
	step("restarting node %d; it catches up from the others", victim.id)
	if err := victim.start(exe); err != nil {
		return err
	}
	if err := waitConverged(ctx, c, 30*time.Second); err != nil {
		return err
	}
	if err := printMembers(ctx, c, stdout); err != nil {
		return err
	}

	fmt.Fprintln(stdout, "\nrows per node (each read from that node's own copy, consistency=stale):")
	var counts []int
	for _, n := range nodes {
		ndb, err := sql.Open("tandem", "tandem://"+n.addr+"/demo?consistency=stale")
		if err != nil {
			return err
		}
		var cnt int
		var sum int64
		err = ndb.QueryRowContext(ctx, `SELECT count(*), sum(writer * 1000 + n) FROM events`).Scan(&cnt, &sum)
		ndb.Close()
		if err != nil {
			return fmt.Errorf("node %d: %w", n.id, err)
		}
		counts = append(counts, cnt)
		fmt.Fprintf(stdout, "  node %d: %d rows, checksum %d\n", n.id, cnt, sum)
	}
	for _, n := range counts {
		if n != counts[0] {
			return errors.New("the nodes hold different row counts")
		}
	}
	fmt.Fprintln(stdout, "\nSELECT writer, count(*) AS rows, min(at) AS first, max(at) AS last FROM events GROUP BY writer ORDER BY writer LIMIT 5:")
	qr, err := db.QueryContext(ctx, `SELECT writer, count(*) AS rows, min(at) AS first, max(at) AS last FROM events GROUP BY writer ORDER BY writer LIMIT 5`)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  writer\trows\tfirst\tlast")
	for qr.Next() {
		var w, cnt int
		var first, last string
		if err := qr.Scan(&w, &cnt, &first, &last); err != nil {
			qr.Close()
			return err
		}
		fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\n", w, cnt, first, last)
	}
	qr.Close()
	tw.Flush()
	ok = true
	if *keep {
		fmt.Fprintf(stdout, "\ncluster is up: tandem sql --cluster %s \"SELECT count(*) FROM events\" --db demo\nCtrl-C stops it (data in %s).\n", strings.Join(addrs, ","), dir)
		<-ctx.Done()
		return nil
	}
	step("demo finished: every node holds the same %d rows", counts[0])
	return nil
}

func loopbackAddrs(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

func waitClient(ctx context.Context, addrs []string, tc *tls.Config, timeout time.Duration) (*client.Client, error) {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := client.New(cctx, client.Config{Addrs: addrs, Name: "tandem-demo", TLS: tc})
		cancel()
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("node 1 did not answer: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitVoters(ctx context.Context, c *client.Client, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ci, err := c.Cluster(ctx)
		if err == nil {
			voters := 0
			for _, m := range ci.Members {
				if m.Role == "voter" {
					voters++
				}
			}
			if voters == n && ci.LeaderID != 0 {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the cluster did not reach %d voters in %v (last error: %v)", n, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitConverged(ctx context.Context, c *client.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		rows, err := listMembers(ctx, c)
		if err == nil && len(rows) > 0 {
			same := true
			for _, r := range rows {
				same = same && r.Healthy && r.Applied != nil && rows[0].Applied != nil && *r.Applied == *rows[0].Applied
			}
			if same {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("the nodes did not converge in %v: %+v %v", timeout, rows, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func printMembers(ctx context.Context, c *client.Client, w io.Writer) error {
	rows, err := listMembers(ctx, c)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tADDRESS\tROLE\tLEADER\tAPPLIED\tHEALTHY")
	for _, r := range rows {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%v\t%s\t%v\n", r.ID, r.Address, r.Role, r.Leader, r.appliedText(), r.Healthy)
	}
	return tw.Flush()
}
