// Package e2e holds the multi-process tests: they build the real tandem binary and run
// clusters of `tandem node` processes on 127.0.0.1.
package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/tandemdb/tandem/driver"
)

var binary string // path of the tandem binary built by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "tandem")
	build := exec.Command("go", "build", "-o", binary, "../cmd/tandem")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build tandem: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one `tandem node` process.
type proc struct {
	id   int
	addr string
	data string
	args []string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
}

// cluster is a set of node processes owned by one test.
type cluster struct {
	t     *testing.T
	nodes []*proc
	extra []string // extra flags for every node
}

// freeAddrs reserves n loopback ports by listening and closing.
func freeAddrs(t *testing.T, n int) []string {
	var lns []net.Listener
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// startCluster starts node 1 (bootstrap) and joins the others to it, then waits for n voters.
func startCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, extra: extra}
	addrs := freeAddrs(t, n)
	base := t.TempDir()
	for i := range n {
		p := &proc{id: i + 1, addr: addrs[i], data: filepath.Join(base, fmt.Sprintf("n%d", i+1)), mu: &sync.Mutex{}, log: &bytes.Buffer{}}
		p.args = []string{"node", "--id", fmt.Sprint(p.id), "--addr", p.addr, "--data", p.data, "--log-level", "info"}
		if i > 0 {
			p.args = append(p.args, "--join", addrs[0])
		}
		p.args = append(p.args, extra...)
		c.nodes = append(c.nodes, p)
	}
	t.Cleanup(c.stopAll)
	c.start(c.nodes[0])
	c.waitMembers(1, 20*time.Second)
	for _, p := range c.nodes[1:] {
		c.start(p)
	}
	c.waitMembers(n, 30*time.Second)
	return c
}

func (c *cluster) start(p *proc) {
	c.t.Helper()
	p.cmd = exec.Command(binary, p.args...)
	out := lockedBuffer{p.mu, p.log}
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(p.cmd, p.done)
}

// kill sends SIGKILL and waits for the process to end.
func (c *cluster) kill(p *proc) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// stop sends SIGTERM (graceful) and waits, killing after 10 s.
func (c *cluster) stop(p *proc) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
}

func (c *cluster) stopAll() {
	for _, p := range c.nodes {
		c.stop(p)
	}
	if c.t.Failed() {
		for _, p := range c.nodes {
			p.mu.Lock()
			c.t.Logf("---- node %d log (last 4 KiB) ----\n%s", p.id, tail(p.log.String(), 4096))
			p.mu.Unlock()
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func (c *cluster) addrs() []string {
	var out []string
	for _, p := range c.nodes {
		out = append(out, p.addr)
	}
	return out
}

// member is one row of `tandem cluster list --format json`.
type member struct {
	ID      uint64 `json:"id"`
	Address string `json:"address"`
	Role    string `json:"role"`
	Leader  bool   `json:"leader"`
	Applied uint64 `json:"applied_index"`
	Healthy bool   `json:"healthy"`
	Problem string `json:"problem"`
}

// tandem runs the CLI and returns its standard output; it fails the test on a non-zero exit
// unless allowFail.
func (c *cluster) tandem(stdin string, args ...string) (string, string, error) {
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// members lists the cluster through the CLI (only the running nodes answer).
func (c *cluster) members() ([]member, error) {
	var live []string
	for _, p := range c.nodes {
		if p.cmd != nil {
			live = append(live, p.addr)
		}
	}
	out, errOut, err := c.tandem("", "cluster", "list", "--cluster", strings.Join(live, ","), "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, errOut)
	}
	var ms []member
	if err := json.Unmarshal([]byte(out), &ms); err != nil {
		return nil, fmt.Errorf("parse %q: %w", out, err)
	}
	return ms, nil
}

// waitMembers waits until the cluster has n voters and a leader.
func (c *cluster) waitMembers(n int, timeout time.Duration) []member {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ms, err := c.members()
		if err == nil {
			voters, leader := 0, false
			for _, m := range ms {
				if m.Role == "voter" {
					voters++
				}
				leader = leader || m.Leader
			}
			if voters == n && leader {
				return ms
			}
			last = fmt.Errorf("%d voters, leader %v: %+v", voters, leader, ms)
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("cluster did not reach %d voters in %v: %v", n, timeout, last)
	return nil
}

// leader returns the process that leads now.
func (c *cluster) leader(timeout time.Duration) *proc {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if ms, err := c.members(); err == nil {
			for _, m := range ms {
				if m.Leader {
					for _, p := range c.nodes {
						if uint64(p.id) == m.ID && p.cmd != nil {
							return p
						}
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no leader")
	return nil
}

// waitConverged waits until every running node has applied the same index.
func (c *cluster) waitConverged(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last []member
	for time.Now().Before(deadline) {
		ms, err := c.members()
		if err == nil {
			last = ms
			same := len(ms) > 0
			for _, m := range ms {
				if m.Applied == 0 || m.Applied != ms[0].Applied {
					same = false
				}
			}
			if same {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("nodes did not converge in %v: %+v", timeout, last)
}

// db opens a database/sql handle on the whole cluster (writes follow the leader).
func (c *cluster) db(name string, params string) *sql.DB {
	c.t.Helper()
	dsn := "tandem://" + strings.Join(c.addrs(), ",") + "/" + name
	if params != "" {
		dsn += "?" + params
	}
	db, err := sql.Open("tandem", dsn)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { db.Close() })
	return db
}

// nodeDB opens a handle that reads only from one node's local state.
func (c *cluster) nodeDB(p *proc, name string) *sql.DB {
	c.t.Helper()
	db, err := sql.Open("tandem", "tandem://"+p.addr+"/"+name+"?consistency=stale")
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { db.Close() })
	return db
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
