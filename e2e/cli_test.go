package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCLIUsage: every command's --help exits 0 and lists its flags; bad command lines exit 2.
// No cluster is needed.
func TestCLIUsage(t *testing.T) {
	c := &cluster{t: t}
	for _, tc := range []struct {
		args  []string
		flags []string
	}{
		{[]string{"node"}, []string{"id", "addr", "advertise", "data", "join", "snapshot-every", "log-level", "tls-cert", "tls-key", "tls-ca"}},
		{[]string{"sql"}, []string{"cluster", "db", "consistency", "format", "timeout", "tls-cert"}},
		{[]string{"cluster"}, []string{"cluster", "format", "timeout", "tls-ca"}},
		{[]string{"cluster", "list"}, []string{"cluster", "format"}},
		{[]string{"cluster", "remove"}, []string{"cluster", "timeout"}},
		{[]string{"cluster", "transfer"}, []string{"cluster", "timeout"}},
		{[]string{"demo"}, []string{"keep", "writers", "rows"}},
		{[]string{"cert"}, []string{"out", "nodes", "hosts", "valid"}},
		{[]string{"bench", "sql"}, []string{"cluster", "workload", "workers", "sweep", "duration", "out"}},
		{[]string{"bench"}, nil},
	} {
		name := strings.Join(tc.args, " ")
		for _, h := range []string{"--help", "-h"} {
			out, errOut, err := c.tandem("", append(tc.args, h)...)
			if code := exitCode(err); code != 0 {
				t.Errorf("tandem %s %s: exit %d, want 0\n%s", name, h, code, errOut)
				continue
			}
			all := out + errOut
			if !strings.Contains(all, "Usage: tandem "+tc.args[0]) {
				t.Errorf("tandem %s %s prints no usage line:\n%s", name, h, all)
			}
			for _, f := range tc.flags {
				if !regexp.MustCompile(`(?m)^  -` + regexp.QuoteMeta(f) + `\b`).MatchString(all) {
					t.Errorf("tandem %s %s does not list --%s:\n%s", name, h, f, all)
				}
			}
		}
	}
	for _, h := range []string{"--help", "-h", "help"} {
		out, errOut, err := c.tandem("", h)
		if code := exitCode(err); code != 0 || !strings.Contains(out+errOut, "Commands:") {
			t.Errorf("tandem %s: exit %d\n%s%s", h, code, out, errOut)
		}
	}

	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string // in standard error
		code int    // exit status; 0 means 2 (a usage error)
	}{
		{nil, "Usage: tandem COMMAND", 0},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`, 0},
		{[]string{"node", "--data", dir}, "--id", 0},
		{[]string{"node", "--addr", "127.0.0.1:0", "--data", dir}, "--id", 0},
		{[]string{"node", "--id", "0", "--data", dir}, "--id", 0},
		{[]string{"node", "--id", "1"}, "--data", 0},
		{[]string{"node", "--id", "x", "--data", dir}, "invalid value", 0},
		{[]string{"sql", "--bogus", "SELECT 1"}, "flag provided but not defined: -bogus", 0},
		{[]string{"sql", "--format", "xml", "SELECT 1"}, "--format", 0},
		{[]string{"sql", "--consistency", "eventual", "SELECT 1"}, "--consistency", 0},
		{[]string{"sql", "--cluster", "127.0.0.1:1", "--timeout", "2s", "SELECT 1"}, "cannot reach the cluster at 127.0.0.1:1", 1},
		{[]string{"cluster", "list", "--cluster", "127.0.0.1:1", "--timeout", "2s"}, "cannot reach the cluster at 127.0.0.1:1", 1},
		{[]string{"cluster"}, "subcommand", 0},
		{[]string{"cluster", "frobnicate"}, "frobnicate", 0},
		{[]string{"cluster", "remove", "--cluster", "127.0.0.1:1"}, "node ID", 0},
		{[]string{"cluster", "remove", "--cluster", "127.0.0.1:1", "zero"}, "not a node ID", 0},
		{[]string{"cluster", "list", "--nope"}, "-nope", 0},
	} {
		start := time.Now()
		out, errOut, err := c.tandem("", tc.args...)
		name := strings.Join(tc.args, " ")
		want := tc.code
		if want == 0 {
			want = 2
		}
		if code := exitCode(err); code != want {
			t.Errorf("tandem %s: exit %d, want %d\nstdout: %s\nstderr: %s", name, code, want, out, errOut)
			continue
		}
		if !strings.Contains(errOut, tc.want) {
			t.Errorf("tandem %s: standard error does not mention %q:\n%s", name, tc.want, errOut)
		}
		if out != "" {
			t.Errorf("tandem %s printed on standard output: %q", name, out)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("tandem %s took %v to fail", name, d)
		}
	}
}

// TestCLICluster drives `tandem sql` and `tandem cluster` against a running 3-node cluster.
func TestCLICluster(t *testing.T) {
	c := startCluster(t, 3)
	all := strings.Join(c.addrs(), ",")
	// run is t.Run with the cluster's helpers failing the subtest.
	run := func(parent *testing.T, name string, f func(t *testing.T)) {
		parent.Run(name, func(t *testing.T) {
			c.t = t
			defer func() { c.t = parent }()
			f(t)
		})
	}
	// sql runs `tandem sql --cluster <all> --db cli args...` and wants exit status 0.
	sql := func(t *testing.T, stdin string, args ...string) string {
		t.Helper()
		out, errOut, err := c.tandem(stdin, append([]string{"sql", "--cluster", all, "--db", "cli"}, args...)...)
		if err != nil {
			t.Fatalf("tandem sql %q: %v\nstdout: %s\nstderr: %s", args, err, out, errOut)
		}
		return out
	}
	// sqlFail runs it and wants exit status code.
	sqlFail := func(t *testing.T, code int, stdin string, args ...string) (string, string) {
		t.Helper()
		out, errOut, err := c.tandem(stdin, append([]string{"sql", "--cluster", all, "--db", "cli"}, args...)...)
		if got := exitCode(err); got != code {
			t.Fatalf("tandem sql %q: exit %d, want %d\nstdout: %s\nstderr: %s", args, got, code, out, errOut)
		}
		return out, errOut
	}

	run(t, "formats", func(t *testing.T) {
		sql(t, "", `CREATE TABLE v(n, i INTEGER, r REAL, w REAL, t TEXT, b BLOB)`)
		if out := sql(t, "", "--format", "json", `INSERT INTO v VALUES (NULL, 42, -2.5, 2.0, 'x,"y"', X'00FF10')`); strings.TrimSpace(out) != `{"last_insert_id":1,"rows_affected":1}` {
			t.Errorf("json insert result: %q", out)
		}
		q := `SELECT n, i, r, w, t, b FROM v`

		table := sql(t, "", "--format", "table", q)
		lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
		if len(lines) != 2 {
			t.Fatalf("table output has %d lines, want 2:\n%s", len(lines), table)
		}
		if got, want := strings.Fields(lines[0]), []string{"n", "i", "r", "w", "t", "b"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("table header %q, want %q", got, want)
		}
		if got, want := strings.Fields(lines[1]), []string{"NULL", "42", "-2.5", "2.0", `x,"y"`, "X'00FF10'"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("table row %q, want %q", got, want)
		}
		if strings.Index(lines[0], "b") != strings.Index(lines[1], "X'") {
			t.Errorf("table columns are not aligned:\n%s", table)
		}

		if got, want := sql(t, "", "--format", "csv", q), "n,i,r,w,t,b\n,42,-2.5,2.0,\"x,\"\"y\"\"\",X'00FF10'\n"; got != want {
			t.Errorf("csv output %q, want %q", got, want)
		}

		js := sql(t, "", "--format", "json", q)
		dec := json.NewDecoder(strings.NewReader(js))
		dec.UseNumber()
		var obj struct {
			Columns []string         `json:"columns"`
			Rows    []map[string]any `json:"rows"`
		}
		if err := dec.Decode(&obj); err != nil {
			t.Fatalf("json output %q: %v", js, err)
		}
		if fmt.Sprint(obj.Columns) != "[n i r w t b]" || len(obj.Rows) != 1 {
			t.Fatalf("json output %q", js)
		}
		row := obj.Rows[0]
		num := func(k string) string {
			if v, ok := row[k].(json.Number); ok {
				return v.String()
			}
			return fmt.Sprintf("not a number: %#v", row[k])
		}
		if v, ok := row["n"]; !ok || v != nil {
			t.Errorf("json n = %#v, want null", v)
		}
		if num("i") != "42" || num("r") != "-2.5" {
			t.Errorf("json i, r = %s, %s", num("i"), num("r"))
		}
		if f, err := json.Number(num("w")).Float64(); err != nil || f != 2 {
			t.Errorf("json w = %s", num("w"))
		}
		if b, _ := row["b"].(map[string]any); row["t"] != `x,"y"` || len(b) != 1 || b["blob"] != "00ff10" {
			t.Errorf("json t, b = %#v, %#v; want the text and {\"blob\": \"00ff10\"}", row["t"], row["b"])
		}
		// Repeated column names keep every value.
		if got := strings.TrimSpace(sql(t, "", "--format", "json", `SELECT 1 AS a, 2 AS a, 3 AS "a:2"`)); got != `{"columns":["a","a:2","a:2:2"],"rows":[{"a":1,"a:2":2,"a:2:2":3}]}` {
			t.Errorf("json with repeated column names: %s", got)
		}
		// Two statements: one JSON object per line.
		js = sql(t, "", "--format", "json", `SELECT 1 AS one; SELECT 'two' AS two`)
		if got := strings.Split(strings.TrimSpace(js), "\n"); len(got) != 2 || got[0] != `{"columns":["one"],"rows":[{"one":1}]}` || got[1] != `{"columns":["two"],"rows":[{"two":"two"}]}` {
			t.Errorf("json of two statements: %q", js)
		}
	})

	run(t, "stdin", func(t *testing.T) {
		script := `
-- a comment; with a semicolon
CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT);
CREATE TABLE log(msg TEXT);
CREATE TRIGGER items_ai AFTER INSERT ON items BEGIN
  INSERT INTO log VALUES ('added; ' || NEW.name);
  UPDATE items SET name = upper(NEW.name) WHERE id = NEW.id;
END;
INSERT INTO items(name) VALUES ('one');
BEGIN;
INSERT INTO items(name) VALUES ('two');
SELECT count(*) AS inside FROM items;
COMMIT;
BEGIN;
INSERT INTO items(name) VALUES ('never');
ROLLBACK;
SELECT id, name FROM items ORDER BY id;
SELECT msg FROM log ORDER BY rowid;
`
		want := "inside\n2\nid,name\n1,ONE\n2,TWO\nmsg\nadded; one\nadded; two\n"
		if got := sql(t, script, "--format", "csv"); got != want {
			t.Errorf("script output %q, want %q", got, want)
		}
		// The committed transaction and the trigger's effects reached every node.
		c.waitConverged(20 * time.Second)
		for _, p := range c.nodes {
			var items, logs int
			if err := c.nodeDB(p, "cli").QueryRow(`SELECT (SELECT count(*) FROM items WHERE name IN ('ONE', 'TWO')), (SELECT count(*) FROM log)`).Scan(&items, &logs); err != nil {
				t.Fatalf("node %d: %v", p.id, err)
			}
			if items != 2 || logs != 2 {
				t.Errorf("node %d: %d items, %d log rows; want 2 and 2", p.id, items, logs)
			}
		}
	})

	run(t, "errors", func(t *testing.T) {
		out, errOut := sqlFail(t, 1, "", "SELEKT 1")
		if strings.TrimSpace(errOut) != `tandem sql: near "SELEKT": syntax error (SQLite error 1)` || out != "" {
			t.Errorf("malformed statement: stdout %q, stderr %q", out, errOut)
		}
		// A script stops at its first failing statement.
		_, errOut = sqlFail(t, 1, "INSERT INTO items(name) VALUES ('four');\nINSERT INTO nosuch VALUES (1);\nINSERT INTO items(name) VALUES ('five');\n")
		if !strings.Contains(errOut, "no such table: nosuch") {
			t.Errorf("failing script: stderr %q", errOut)
		}
		if got := sql(t, "", "--format", "csv", `SELECT name FROM items WHERE name IN ('FOUR', 'FIVE')`); got != "name\nFOUR\n" {
			t.Errorf("after the failing script: %q, want only FOUR", got)
		}
		// A failing statement inside a transaction rolls it back.
		_, errOut = sqlFail(t, 1, "BEGIN;\nINSERT INTO items(name) VALUES ('six');\nINSERT INTO items(id, name) VALUES (1, 'dup');\nCOMMIT;\n")
		if !strings.Contains(errOut, "UNIQUE constraint failed") {
			t.Errorf("failing transaction: stderr %q", errOut)
		}
		// Input that ends inside a transaction is rolled back and is an error.
		_, errOut = sqlFail(t, 1, "BEGIN;\nINSERT INTO items(name) VALUES ('seven');\n")
		if !strings.Contains(errOut, "rolled back") {
			t.Errorf("unterminated transaction: stderr %q", errOut)
		}
		if got := sql(t, "", "--format", "csv", `SELECT count(*) AS n FROM items WHERE name IN ('SIX', 'SEVEN', 'DUP')`); got != "n\n0\n" {
			t.Errorf("rolled-back rows are present: %q", got)
		}
		sqlFail(t, 2, "", "--format", "yaml", "SELECT 1")
		sqlFail(t, 2, "   \n") // no SQL at all
		if out := sql(t, "   \n-- only a comment\n"); out != "" {
			t.Errorf("a script of comments only printed %q", out)
		}
	})

	run(t, "transfer", func(t *testing.T) {
		if c.leader(10*time.Second).id == 2 {
			if out, errOut, err := c.tandem("", "cluster", "transfer", "--cluster", all, "1"); err != nil {
				t.Fatalf("transfer to 1: %v\n%s%s", err, out, errOut)
			}
			if ok, last := waitFor(10*time.Second, func() (bool, string) {
				p := c.leader(10 * time.Second)
				return p.id == 1, fmt.Sprint(p.id)
			}); !ok {
				t.Fatalf("node %s leads after a transfer to node 1", last)
			}
		}
		out, errOut, err := c.tandem("", "cluster", "transfer", "--cluster", all, "2")
		if err != nil {
			t.Fatalf("transfer to 2: %v\n%s%s", err, out, errOut)
		}
		if !strings.Contains(out, "leader is now node 2") {
			t.Errorf("transfer output %q", out)
		}
		ms, err := c.members()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Leader != (m.ID == 2) {
				t.Errorf("after the transfer to node 2: %+v", ms)
				break
			}
		}
		// Writes work through the new leader.
		sql(t, "", `INSERT INTO items(name) VALUES ('after transfer')`)
	})

	run(t, "remove", func(t *testing.T) {
		out, errOut, err := c.tandem("", "cluster", "remove", "--cluster", all, "3")
		if err != nil {
			t.Fatalf("remove 3: %v\n%s%s", err, out, errOut)
		}
		if !strings.Contains(out, "removed node 3") {
			t.Errorf("remove output %q", out)
		}
		ok, last := waitFor(10*time.Second, func() (bool, string) {
			ms, err := c.members()
			if err != nil {
				return false, err.Error()
			}
			_, has3 := memberByID(ms, 3)
			return len(ms) == 2 && !has3, fmt.Sprintf("%+v", ms)
		})
		if !ok {
			t.Fatalf("the member list after removing node 3: %s", last)
		}
		out, errOut, err = c.tandem("", "cluster", "list", "--cluster", all)
		if err != nil {
			t.Fatalf("cluster list: %v\n%s", err, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || strings.Contains(out, c.nodes[2].addr) {
			t.Errorf("cluster list after the removal:\n%s", out)
		}
		// The removed node's process stops by itself, with status 0, and says why; a restart
		// from its data directory finds the removal again and stops too.
		p3 := c.nodes[2]
		stopsByItself := func(what string) {
			t.Helper()
			select {
			case <-p3.done:
			case <-time.After(15 * time.Second):
				t.Fatalf("%s still runs after 15 s:\n%s", what, tail(p3.logText(), 2048))
			}
			if code := p3.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("%s exited with status %d", what, code)
			}
		}
		stopsByItself("the removed node")
		if log := p3.logText(); !strings.Contains(log, "removed from the cluster") {
			t.Errorf("removed node's log does not say why it stopped:\n%s", tail(log, 2048))
		}
		c.start(p3)
		stopsByItself("a restart of the removed node")
		p3.cmd = nil

		// A node the cluster refuses to add (here: it has the ID of a live member) exits with
		// status 3, which a supervisor can be told not to restart it for.
		dup := &proc{id: 2, addr: freeAddrs(t, 1)[0], data: filepath.Join(t.TempDir(), "dup"), mu: &sync.Mutex{}, log: &bytes.Buffer{}}
		dup.args = append([]string{"node", "--id", "2", "--addr", dup.addr, "--data", dup.data, "--join", c.nodes[0].addr}, c.extra...)
		c.start(dup)
		select {
		case <-dup.done:
		case <-time.After(30 * time.Second):
			c.kill(dup)
			t.Fatalf("a node with a taken ID still runs after 30 s:\n%s", tail(dup.logText(), 2048))
		}
		if code := dup.cmd.ProcessState.ExitCode(); code != 3 {
			t.Errorf("a refused node exited with status %d, want 3:\n%s", code, tail(dup.logText(), 2048))
		}
	})

	run(t, "stale", func(t *testing.T) {
		// Node 3, removed, has stopped: a stale read that lists it first is answered by the
		// next node, never from node 3's frozen copy.
		n1, n2, n3 := c.nodes[0].addr, c.nodes[1].addr, c.nodes[2].addr
		sql(t, "", `INSERT INTO items(name) VALUES ('after remove')`)
		count := `SELECT count(*) AS n FROM items WHERE name = 'AFTER REMOVE'` // the trigger upper-cases names
		if got := sql(t, "", "--format", "csv", count); got != "n\n1\n" {
			t.Fatalf("linearizable read after the write: %q", got)
		}
		stale := func(first string) string {
			out, errOut, err := c.tandem("", "sql", "--cluster", first+","+n1+","+n2+","+n3, "--db", "cli", "--consistency", "stale", "--format", "csv", count)
			if err != nil {
				t.Fatalf("stale read from %s: %v\n%s", first, err, errOut)
			}
			return out
		}
		for _, first := range []string{n3, n1, n2} {
			if ok, last := waitFor(10*time.Second, func() (bool, string) {
				got := stale(first)
				return got == "n\n1\n", got
			}); !ok {
				t.Errorf("stale read listing %s first: %q", first, last)
			}
		}
	})

	run(t, "health", func(t *testing.T) {
		// Nodes 1 and 2 are the voters left. `cluster health` exits 0 while both answer and
		// know a leader, and 1 for node 1 alone once node 2 stops: no quorum, no leader.
		n1, n2 := c.nodes[0].addr, c.nodes[1].addr
		health := func(addrs string) (string, int) {
			out, errOut, err := c.tandem("", "cluster", "health", "--cluster", addrs, "--timeout", "5s")
			return out + errOut, exitCode(err)
		}
		if out, code := health(n1 + "," + n2); code != 0 {
			t.Fatalf("cluster health of two healthy voters: exit %d\n%s", code, out)
		}
		c.stop(c.nodes[1])
		if ok, last := waitFor(20*time.Second, func() (bool, string) {
			out, code := health(n1)
			return code == 1 && strings.Contains(out, "knows no leader"), out
		}); !ok {
			t.Errorf("cluster health of a voter without quorum: %s", last)
		}
		c.start(c.nodes[1])
		if ok, last := waitFor(30*time.Second, func() (bool, string) {
			out, code := health(n1 + "," + n2)
			return code == 0, out
		}); !ok {
			t.Errorf("cluster health after node 2 came back: %s", last)
		}
	})
}

// TestDemo runs `tandem demo` to completion.
func TestDemo(t *testing.T) {
	ctx := ctxT(t, 90*time.Second)
	cmd := exec.CommandContext(ctx, binary, "demo")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tandem demo: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "every node holds the same") {
		t.Fatalf("tandem demo finished without its closing line:\n%s", out)
	}
	for _, want := range []string{"3 voters, cluster ready", "killing the leader", "interactive transaction"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("tandem demo output lacks %q", want)
		}
	}
}
