package server_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem"
	"github.com/tandemdb/tandem/internal/testcluster"
	"github.com/tandemdb/tandem/wire"
)

// ---- helpers ----

// startNode starts a single node (its own leader) and waits until it is ready.
func startNode(tb testing.TB) *tandem.Node {
	tb.Helper()
	node, err := tandem.New(tb.TempDir(), tandem.WithID(1), tandem.WithAddress("127.0.0.1:0"),
		tandem.WithTickInterval(20*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { node.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := node.Ready(ctx); err != nil {
		tb.Fatal(err)
	}
	return node
}

// startCluster starts n nodes: the first bootstraps, the others join it; it returns once all
// are voters.
func startCluster(t *testing.T, n int) []*tandem.Node {
	return testcluster.Start(t, n, tandem.WithTickInterval(20*time.Millisecond))
}

// openDB opens a well-behaved database/sql connection to node's database name.
func openDB(t *testing.T, node *tandem.Node, name string) *sql.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := node.Open(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// mustExec runs a statement through db within d.
func mustExec(t *testing.T, db *sql.DB, d time.Duration, query string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if _, err := db.ExecContext(ctx, query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// count returns the result of a single-integer query through db within d.
func count(t *testing.T, db *sql.DB, d time.Duration, query string, args ...any) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var n int64
	if err := db.QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// raw is a client connection spoken frame by frame.
type raw struct {
	c net.Conn
	r *wire.Reader
	w *wire.Writer
}

// dial connects to addr and sends the client preamble (no Hello).
func dial(tb testing.TB, addr string) *raw {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	rc := &raw{c: c, r: wire.NewReader(c, 0), w: wire.NewWriter(c, 0)}
	if _, err := rc.w.Write([]byte(wire.ClientPreamble)); err != nil {
		tb.Fatal(err)
	}
	return rc
}

// connect dials addr and performs the handshake.
func connect(tb testing.TB, addr string) *raw {
	tb.Helper()
	rc := dial(tb, addr)
	rc.send(tb, 77, &wire.Hello{Version: wire.Version, Name: "server_test"})
	id, m := rc.recv(tb)
	if _, ok := m.(*wire.Welcome); !ok || id != 77 {
		tb.Fatalf("handshake: got %d %T %v", id, m, m)
	}
	return rc
}

func (rc *raw) send(tb testing.TB, id uint64, m wire.Message) {
	tb.Helper()
	if err := rc.w.WriteMsg(id, m); err != nil {
		tb.Fatal(err)
	}
	if err := rc.w.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// sendRaw writes bytes as they are.
func (rc *raw) sendRaw(tb testing.TB, b []byte) {
	tb.Helper()
	if _, err := rc.w.Write(b); err != nil {
		tb.Fatal(err)
	}
	if err := rc.w.Flush(); err != nil {
		tb.Fatal(err)
	}
}

// recv reads and decodes one frame within 10 s.
func (rc *raw) recv(tb testing.TB) (uint64, wire.Message) {
	tb.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := rc.r.ReadFrame()
	if err != nil {
		tb.Fatalf("read frame: %v", err)
	}
	m, err := wire.Decode(f)
	if err != nil {
		tb.Fatalf("decode %s frame from the server: %v", f.Type, err)
	}
	return f.ID, m
}

// call sends m and returns the answer, which must carry the same id.
func (rc *raw) call(tb testing.TB, id uint64, m wire.Message) wire.Message {
	tb.Helper()
	rc.send(tb, id, m)
	got, resp := rc.recv(tb)
	if got != id {
		tb.Fatalf("answer to request %d carries id %d (%T %v)", id, got, resp, resp)
	}
	return resp
}

// expectClosed asserts that the server closes the connection within 5 s. It returns the
// frames the server sent before closing.
func (rc *raw) expectClosed(tb testing.TB) []wire.Message {
	tb.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []wire.Message
	for {
		f, err := rc.r.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tb.Fatalf("the server kept the connection open (frames before: %v)", got)
			}
			return got
		}
		m, err := wire.Decode(f)
		if err != nil {
			tb.Fatalf("decode %s frame from the server: %v", f.Type, err)
		}
		got = append(got, m)
	}
}

// alive asserts that rc still answers a request.
func (rc *raw) alive(tb testing.TB, id uint64) {
	tb.Helper()
	if m, ok := rc.call(tb, id, &wire.StatusReq{}).(*wire.NodeStatus); !ok || m.ID == 0 {
		tb.Fatalf("StatusReq: got %T %v", m, m)
	}
}

// vanish closes the connection abruptly (RST, no FIN).
func (rc *raw) vanish() {
	if tc, ok := rc.c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	rc.c.Close()
}

func header(length uint32, id uint64, typ byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, length)
	b = binary.LittleEndian.AppendUint64(b, id)
	return append(b, typ)
}

func wantError(tb testing.TB, m wire.Message, code wire.ErrCode) *wire.Error {
	tb.Helper()
	e, ok := m.(*wire.Error)
	if !ok || e.Code != code {
		tb.Fatalf("want Error{%s}, got %T %v", code, m, m)
	}
	return e
}

// ---- connection-level violations ----

func TestUnknownFrameTypeClosesOnlyThatConnection(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(x)`)
	other := connect(t, node.Addr())

	for _, typ := range []byte{0, 31, 99, 255} { // 31: the first type after BeginRead
		bad := connect(t, node.Addr())
		bad.alive(t, 1)
		bad.sendRaw(t, header(9, 5, typ))
		for _, m := range bad.expectClosed(t) {
			// The server may answer the frame with Error{BadRequest} before closing.
			wantError(t, m, wire.CodeBadRequest)
		}
		other.alive(t, uint64(typ)+100)
		mustExec(t, db, 5*time.Second, `INSERT INTO t VALUES (?)`, int64(typ))
	}
	if n := count(t, db, 5*time.Second, `SELECT count(*) FROM t`); n != 4 {
		t.Fatalf("%d rows, want 4", n)
	}
}

func TestOversizeFrameClosesConnection(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(x)`)
	other := connect(t, node.Addr())

	for _, length := range []uint32{wire.DefaultMaxFrameSize + 1, 1 << 30, ^uint32(0)} {
		bad := connect(t, node.Addr())
		// The header of an Exec claiming more than the limit, then some of its bytes.
		bad.sendRaw(t, append(header(length, 9, byte(wire.TypeExec)), make([]byte, 4096)...))
		if got := bad.expectClosed(t); len(got) != 0 {
			t.Fatalf("length %d: unexpected answers %v", length, got)
		}
		other.alive(t, uint64(length))
		mustExec(t, db, 5*time.Second, `INSERT INTO t VALUES (1)`)
	}
	// Exactly at the limit is legal: a well-framed but undecodable payload gets BadRequest.
	ok := connect(t, node.Addr())
	big := append(header(wire.DefaultMaxFrameSize, 3, byte(wire.TypeExec)), make([]byte, wire.DefaultMaxFrameSize-9)...)
	for i := 13; i < len(big); i++ {
		big[i] = 0xff
	}
	ok.sendRaw(t, big)
	id, m := ok.recv(t)
	if id != 3 {
		t.Fatalf("answer id %d", id)
	}
	wantError(t, m, wire.CodeBadRequest)
	ok.alive(t, 4)
}

func TestShortAndGarbageFrames(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(x)`)
	other := connect(t, node.Addr())

	violations := map[string][]byte{
		"length 0":                  header(0, 1, byte(wire.TypeStatusReq))[:4],
		"length 8":                  header(8, 1, byte(wire.TypeStatusReq)),
		"ascii garbage":             []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"ends inside the header":    header(20, 1, byte(wire.TypeExec))[:7],
		"ends inside the payload":   append(header(20, 1, byte(wire.TypeExec)), 1, 2, 3),
		"type zero after good one":  append(header(9, 1, byte(wire.TypeStatusReq)), header(9, 2, 0)...),
		"random bytes, huge length": {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
	}
	for name, b := range violations {
		t.Run(name, func(t *testing.T) {
			bad := connect(t, node.Addr())
			bad.sendRaw(t, b)
			if strings.HasPrefix(name, "ends inside") {
				// A stream that ends inside a frame: the client half-closes.
				_ = bad.c.(*net.TCPConn).CloseWrite()
			}
			for _, m := range bad.expectClosed(t) {
				switch m.(type) {
				case *wire.NodeStatus: // the good frame before the violation
				case *wire.Error:
					wantError(t, m, wire.CodeBadRequest)
				default:
					t.Fatalf("unexpected answer %T %v", m, m)
				}
			}
			other.alive(t, 1)
		})
	}

	t.Run("undecodable payloads", func(t *testing.T) {
		rc := connect(t, node.Addr())
		exec, _ := wire.AppendFrame(nil, 0, &wire.Exec{DB: "app", SQL: "INSERT INTO t VALUES (1)", RequestID: 1}, 0)
		payload := exec[wire.HeaderSize:]
		frames := map[string][]byte{
			"truncated Exec":       payload[:len(payload)-3],
			"Exec, trailing bytes": append(append([]byte(nil), payload...), 0),
			"Exec, bad value tag":  {0, 0, 0, 1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			"Exec, huge count":     {0xff, 0xff, 0xff, 0xff, 0x0f},
			"StatusReq with bytes": {1},
			"Next, short":          {1, 2, 3},
			"empty Begin":          {},
		}
		types := map[string]wire.MsgType{"StatusReq with bytes": wire.TypeStatusReq, "Next, short": wire.TypeNext, "empty Begin": wire.TypeBegin}
		id := uint64(10)
		for name, p := range frames {
			typ, ok := types[name]
			if !ok {
				typ = wire.TypeExec
			}
			id++
			rc.sendRaw(t, append(header(uint32(9+len(p)), id, byte(typ)), p...))
			got, m := rc.recv(t)
			if got != id {
				t.Fatalf("%s: answer id %d, want %d", name, got, id)
			}
			wantError(t, m, wire.CodeBadRequest)
			rc.alive(t, id+1000) // the same connection stays usable
		}
		// Well-formed but invalid: empty SQL, unknown consistency.
		wantError(t, rc.call(t, 2000, &wire.Exec{DB: "app"}), wire.CodeBadRequest)
		wantError(t, rc.call(t, 2001, &wire.Query{DB: "app", SQL: "SELECT 1", Consistency: 9}), wire.CodeBadRequest)
		if _, ok := rc.call(t, 2002, &wire.Exec{DB: "app", SQL: "INSERT INTO t VALUES (7)", RequestID: 7}).(*wire.Result); !ok {
			t.Fatal("Exec after bad requests failed")
		}
	})
	if n := count(t, db, 5*time.Second, `SELECT count(*) FROM t`); n != 1 {
		t.Fatalf("%d rows, want 1 (a malformed Exec must not run)", n)
	}
}

func TestHandshakeErrors(t *testing.T) {
	node := startNode(t)
	other := connect(t, node.Addr())

	t.Run("no Hello", func(t *testing.T) {
		rc := dial(t, node.Addr())
		rc.send(t, 5, &wire.Exec{DB: "app", SQL: "CREATE TABLE t(x)"})
		id, m := rc.recv(t)
		if id != 5 {
			t.Fatalf("answer id %d", id)
		}
		wantError(t, m, wire.CodeBadRequest)
		rc.expectClosed(t)
	})
	t.Run("wrong version", func(t *testing.T) {
		for _, v := range []uint16{0, 2, 0xffff} {
			rc := dial(t, node.Addr())
			rc.send(t, 6, &wire.Hello{Version: v})
			id, m := rc.recv(t)
			if id != 6 {
				t.Fatalf("answer id %d", id)
			}
			e := wantError(t, m, wire.CodeUnsupportedVersion)
			if e.Message == "" {
				t.Fatal("UnsupportedVersion without a message")
			}
			rc.expectClosed(t)
		}
	})
	t.Run("malformed Hello", func(t *testing.T) {
		rc := dial(t, node.Addr())
		rc.sendRaw(t, append(header(9+3, 8, byte(wire.TypeHello)), 1, 0, 0))
		id, m := rc.recv(t)
		if id != 8 {
			t.Fatalf("answer id %d", id)
		}
		wantError(t, m, wire.CodeBadRequest)
		rc.expectClosed(t)
	})
	t.Run("unknown type first", func(t *testing.T) {
		rc := dial(t, node.Addr())
		rc.sendRaw(t, header(9, 1, 200))
		rc.expectClosed(t)
	})
	t.Run("wrong preamble", func(t *testing.T) {
		c, err := net.Dial("tcp", node.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("TNDX")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
			t.Fatalf("connection not closed: %v", err)
		}
	})
	t.Run("second Hello", func(t *testing.T) {
		rc := connect(t, node.Addr())
		wantError(t, rc.call(t, 9, &wire.Hello{Version: wire.Version}), wire.CodeBadRequest)
		rc.alive(t, 10)
	})
	other.alive(t, 1)
}

// ---- clients that vanish ----

func TestVanishedTransactionRollsBack(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)

	for i, mode := range []string{"after its insert", "with a statement in flight", "after Begin only", "clean close"} {
		t.Run(mode, func(t *testing.T) {
			rc := connect(t, node.Addr())
			begun, ok := rc.call(t, 1, &wire.Begin{DB: "app"}).(*wire.TxBegun)
			if !ok || begun.TxID == 0 {
				t.Fatalf("Begin: %T %v", begun, begun)
			}
			ghost := int64(1000 + i)
			switch mode {
			case "after its insert", "clean close":
				res, ok := rc.call(t, 2, &wire.Exec{SQL: "INSERT INTO t VALUES (?, 'ghost')", Args: []wire.Value{ghost}, TxID: begun.TxID}).(*wire.Result)
				if !ok || res.RowsAffected != 1 {
					t.Fatalf("Exec in transaction: %T %v", res, res)
				}
			case "with a statement in flight":
				// A long statement that holds the writer until it is interrupted.
				rc.send(t, 2, &wire.Exec{SQL: "INSERT INTO t SELECT ?+x, 'ghost' FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 100000000) SELECT x FROM c)", Args: []wire.Value{ghost}, TxID: begun.TxID})
				time.Sleep(50 * time.Millisecond)
			}
			if mode == "clean close" {
				rc.c.Close()
			} else {
				rc.vanish()
			}
			// The writer is released at once: a write from another client succeeds quickly.
			start := time.Now()
			mustExec(t, db, 2*time.Second, `INSERT INTO t(v) VALUES ('after')`)
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("write took %v", d)
			}
			if n := count(t, db, 5*time.Second, `SELECT count(*) FROM t WHERE v = 'ghost'`); n != 0 {
				t.Fatalf("%d rows of the vanished transaction are visible", n)
			}
			// And a new interactive transaction can take the writer too.
			rc2 := connect(t, node.Addr())
			b2, ok := rc2.call(t, 1, &wire.Begin{DB: "app"}).(*wire.TxBegun)
			if !ok {
				t.Fatalf("Begin: %T %v", b2, b2)
			}
			if _, ok := rc2.call(t, 2, &wire.Exec{SQL: "INSERT INTO t(v) VALUES ('tx')", TxID: b2.TxID}).(*wire.Result); !ok {
				t.Fatal("Exec in second transaction failed")
			}
			if _, ok := rc2.call(t, 3, &wire.Commit{TxID: b2.TxID, RequestID: 3}).(*wire.Result); !ok {
				t.Fatal("Commit failed")
			}
		})
	}
	if n := count(t, db, 5*time.Second, `SELECT count(*) FROM t WHERE v IN ('after', 'tx')`); n != 8 {
		t.Fatalf("%d rows, want 8", n)
	}
}

func TestVanishedCursorLeaksNothing(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(x INTEGER)`)
	mustExec(t, db, 10*time.Second, `INSERT INTO t WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c LIMIT 5000) SELECT x FROM c`)

	// The read pool holds 4 connections per database: 10 leaked cursors would exhaust it.
	for i := range 10 {
		rc := connect(t, node.Addr())
		for _, c := range []wire.Consistency{wire.Linearizable, wire.Stale} {
			p, ok := rc.call(t, uint64(c)+1, &wire.Query{DB: "app", SQL: "SELECT x FROM t ORDER BY x", PageSize: 10, Consistency: c}).(*wire.RowsPage)
			if !ok || p.Done || p.Cursor == 0 || len(p.Rows) != 10 {
				t.Fatalf("Query: %T %+v", p, p)
			}
		}
		if i%2 == 0 {
			rc.vanish()
		} else {
			rc.c.Close()
		}
		if n := count(t, db, 2*time.Second, `SELECT count(*) FROM t`); n != 5000 {
			t.Fatalf("count %d", n)
		}
	}
	// Several concurrent readers still get connections from the pool, and writes go on.
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			rows, err := db.QueryContext(ctx, `SELECT x FROM t`)
			if err != nil {
				errs <- err
				return
			}
			n := 0
			for rows.Next() {
				n++
			}
			rows.Close()
			if n != 5000 && rows.Err() == nil {
				err = errors.New("short read")
			}
			errs <- errors.Join(err, rows.Err())
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	mustExec(t, db, 2*time.Second, `INSERT INTO t VALUES (0)`)
}

// ---- SQL errors ----

func TestMalformedSQLReturnsSQLiteMessage(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(x INTEGER NOT NULL)`)
	rc := connect(t, node.Addr())

	cases := []struct {
		msg      wire.Message
		code     int32
		contains string
	}{
		{&wire.Exec{DB: "app", SQL: "SELEC 1", RequestID: 1}, 1, `near "SELEC": syntax error`},
		{&wire.Exec{DB: "app", SQL: "INSERT INTO nope VALUES (1)", RequestID: 2}, 1, "no such table: nope"},
		{&wire.Exec{DB: "app", SQL: "INSERT INTO t VALUES (NULL)", RequestID: 3}, 19, "NOT NULL constraint failed: t.x"},
		{&wire.Query{DB: "app", SQL: "SELEC x FROM t"}, 1, `near "SELEC": syntax error`},
		{&wire.Query{DB: "app", SQL: "SELECT y FROM t"}, 1, "no such column: y"},
		{&wire.Query{DB: "app", SQL: "SELECT x FROM t", Consistency: wire.Stale, Args: []wire.Value{int64(1)}}, 25, "too many arguments"},
	}
	for i, c := range cases {
		id := uint64(100 + i)
		e := wantError(t, rc.call(t, id, c.msg), wire.CodeSQLite)
		if e.SQLiteCode != c.code || !strings.Contains(e.Message, c.contains) {
			t.Errorf("%T %v: got code %d %q, want %d %q", c.msg, c.msg, e.SQLiteCode, e.Message, c.code, c.contains)
		}
		// The next request on the same connection works.
		if _, ok := rc.call(t, id+1000, &wire.Exec{DB: "app", SQL: "INSERT INTO t VALUES (?)", Args: []wire.Value{int64(i)}, RequestID: id + 1000}).(*wire.Result); !ok {
			t.Fatalf("Exec after %v failed", c.msg)
		}
	}
	// Through database/sql too: the message reaches the application, the pool keeps working.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "INSERT INTO t VALUES ("); err == nil || !strings.Contains(err.Error(), "incomplete input") {
		t.Fatalf("Exec: %v", err)
	}
	if _, err := db.QueryContext(ctx, "SELECT * FROM nope"); err == nil || !strings.Contains(err.Error(), "no such table: nope") {
		t.Fatalf("Query: %v", err)
	}
	if n := count(t, db, 5*time.Second, `SELECT count(*) FROM t`); n != int64(len(cases)) {
		t.Fatalf("%d rows, want %d", n, len(cases))
	}
}

// ---- multiplexing ----

func TestPipelinedRequestsAnsweredOnce(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(x INTEGER)`)
	rc := connect(t, node.Addr())

	const n = 200
	for i := range n {
		var m wire.Message = &wire.Exec{DB: "app", SQL: "INSERT INTO t VALUES (?)", Args: []wire.Value{int64(i)}, RequestID: uint64(i + 1)}
		if i%10 == 9 {
			m = &wire.Query{DB: "app", SQL: "SELECT count(*) FROM t", Consistency: wire.Stale}
		}
		if err := rc.w.WriteMsg(uint64(5000+i), m); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.w.Flush(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for range n {
		id, m := rc.recv(t)
		if id < 5000 || id >= 5000+n || seen[id] {
			t.Fatalf("unexpected or repeated answer id %d (%T %v)", id, m, m)
		}
		seen[id] = true
		want := wire.TypeResult
		if (id-5000)%10 == 9 {
			want = wire.TypeRowsPage
		}
		if m.Type() != want {
			t.Fatalf("request %d: got %T %v, want %s", id, m, m, want)
		}
	}
	// No extra answers.
	_ = rc.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if f, err := rc.r.ReadFrame(); err == nil {
		t.Fatalf("extra frame %d %s", f.ID, f.Type)
	}
	_ = rc.c.SetReadDeadline(time.Time{})
	if got := count(t, db, 5*time.Second, `SELECT count(*) FROM t`); got != n-n/10 {
		t.Fatalf("%d rows, want %d", got, n-n/10)
	}
}

// ---- followers ----

func TestFollowerRedirectsWrites(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	leaderID, leaderAddr, err := nodes[0].Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var follower *tandem.Node
	for _, n := range nodes {
		if n.ID() == leaderID {
			if n.Addr() != leaderAddr {
				t.Fatalf("leader %d at %s reports address %s", leaderID, n.Addr(), leaderAddr)
			}
		} else if follower == nil {
			follower = n
		}
	}
	rc := connect(t, follower.Addr())
	for i, m := range []wire.Message{
		&wire.Exec{DB: "app", SQL: "CREATE TABLE t(x)", RequestID: 1},
		&wire.Begin{DB: "app"},
		&wire.Query{DB: "app", SQL: "SELECT 1", Consistency: wire.Linearizable},
	} {
		resp := rc.call(t, uint64(i+1), m)
		r, ok := resp.(*wire.Redirect)
		if !ok || r.LeaderID != leaderID || r.LeaderAddr != leaderAddr {
			t.Fatalf("%T on follower %d: got %T %v, want Redirect{%d %s}", m, follower.ID(), resp, resp, leaderID, leaderAddr)
		}
	}
	// Following the redirect works.
	lc := connect(t, leaderAddr)
	if _, ok := lc.call(t, 1, &wire.Exec{DB: "app", SQL: "CREATE TABLE t(x)", RequestID: 1}).(*wire.Result); !ok {
		t.Fatal("Exec on the leader failed")
	}
}

// ---- fuzzing ----

// FuzzServerFrames sends arbitrary bytes after a valid Hello to a running node, then checks
// that every frame the node sent back is well-formed, that it ends the connection once the
// client's stream ends, and that a well-behaved client is still served.
func FuzzServerFrames(f *testing.F) {
	frame := func(id uint64, m wire.Message) []byte {
		b, err := wire.AppendFrame(nil, id, m, 0)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add([]byte{})
	f.Add(frame(1, &wire.StatusReq{}))
	f.Add(frame(1, &wire.Exec{DB: "fz", SQL: "CREATE TABLE IF NOT EXISTS a(x)", RequestID: 1}))
	f.Add(frame(2, &wire.Query{DB: "fz", SQL: "SELECT 1", PageSize: 1}))
	f.Add(append(frame(3, &wire.Begin{DB: "fz"}), frame(4, &wire.Exec{SQL: "SELECT 1", TxID: 1})...))
	f.Add(frame(5, &wire.Next{Cursor: 1}))
	f.Add(frame(6, &wire.Hello{Version: 1}))
	f.Add(header(9, 1, 99))
	f.Add(header(wire.DefaultMaxFrameSize+1, 1, 9))
	f.Add(append(header(12, 1, 9), 0xff, 0xff, 0xff))
	f.Add([]byte("\x00\x00\x00\x00garbage"))

	node := startNode(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// Membership changes are authorised administration, not bad input: a valid Remove
		// of node 1 would legitimately break the node.
		r := wire.NewReader(bytes.NewReader(data), 0)
		for {
			fr, err := r.ReadFrame()
			if err != nil {
				break
			}
			if fr.Type == wire.TypeJoin || fr.Type == wire.TypeRemove || fr.Type == wire.TypeTransfer {
				t.Skip("membership request")
			}
		}
		rc := connect(t, node.Addr())
		rc.sendRaw(t, data)
		_ = rc.c.(*net.TCPConn).CloseWrite()
		_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			fr, err := rc.r.ReadFrame()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatal("the node did not end the connection after the client's stream ended")
				}
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
					t.Fatalf("bad frame from the node: %v", err)
				}
				break
			}
			if _, err := wire.Decode(fr); err != nil {
				t.Fatalf("undecodable %s frame from the node: %v", fr.Type, err)
			}
		}
		rc.c.Close()

		// A normal client is still served, reads and writes.
		good := connect(t, node.Addr())
		good.alive(t, 1)
		for i, m := range []wire.Message{
			&wire.Exec{DB: "fuzzcheck", SQL: "CREATE TABLE IF NOT EXISTS ok(x)"},
			&wire.Exec{DB: "fuzzcheck", SQL: "INSERT INTO ok VALUES (1)"},
			&wire.Query{DB: "fuzzcheck", SQL: "SELECT count(*) FROM ok"},
		} {
			resp := good.call(t, uint64(i+2), m)
			if resp.Type() != wire.TypeResult && resp.Type() != wire.TypeRowsPage {
				t.Fatalf("%T: %T %v", m, resp, resp)
			}
		}
		good.c.Close()
	})
}

func isReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}

func TestPipelinedTransactionKeepsOrder(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(seq INTEGER PRIMARY KEY AUTOINCREMENT, v INTEGER)`)
	rc := connect(t, node.Addr())
	begun, ok := rc.call(t, 1, &wire.Begin{DB: "app"}).(*wire.TxBegun)
	if !ok {
		t.Fatalf("Begin: %T %v", begun, begun)
	}
	// Statements of one transaction written back to back, then its Commit: the server runs
	// them in the order received (protocol §7).
	const n = 100
	for i := range n {
		if err := rc.w.WriteMsg(uint64(10+i), &wire.Exec{SQL: "INSERT INTO t(v) VALUES (?)", Args: []wire.Value{int64(i)}, TxID: begun.TxID}); err != nil {
			t.Fatal(err)
		}
	}
	if err := rc.w.WriteMsg(9, &wire.Commit{TxID: begun.TxID, RequestID: 9}); err != nil {
		t.Fatal(err)
	}
	if err := rc.w.Flush(); err != nil {
		t.Fatal(err)
	}
	for range n + 1 {
		id, m := rc.recv(t)
		if _, ok := m.(*wire.Result); !ok {
			t.Fatalf("request %d: %T %v", id, m, m)
		}
	}
	if got := count(t, db, 5*time.Second, `SELECT count(*) FROM t WHERE seq = v + 1`); got != n {
		t.Fatalf("%d of %d statements ran in the order sent", got, n)
	}
}

// TestVanishingClientsDoNotInterruptOthers: a client that vanishes mid-write ends its
// requests' contexts, which interrupts their SQLite statements. That interrupt must land
// before the writer moves on, never on the next client's statement.
func TestVanishingClientsDoNotInterruptOthers(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(x)`)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := connect(t, node.Addr())
			for i := uint64(1); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				// Vanishing clients: a write, then gone at once.
				rc.send(t, i, &wire.Exec{DB: "app", SQL: "INSERT INTO t SELECT value FROM generate_series(1, 2000)", RequestID: i + uint64(g)<<32})
				if i%20 == 0 {
					rc.vanish()
					rc = connect(t, node.Addr())
				}
			}
		}()
	}
	bad := 0
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := db.ExecContext(ctx, `INSERT INTO t VALUES (-1)`)
		cancel()
		if err != nil && strings.Contains(err.Error(), "interrupt") {
			bad++
			t.Log(err)
		}
	}
	close(stop)
	wg.Wait()
	if bad > 0 {
		t.Fatalf("%d well-behaved writes interrupted", bad)
	}
}

// TestWritingQueryDeduplicated: a query that writes (INSERT ... RETURNING) carries a request
// id; sent twice with the same id (a client's retry), it is applied once and both answers
// hold the first outcome.
func TestWritingQueryDeduplicated(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)`)
	rc := connect(t, node.Addr())
	q := &wire.Query{DB: "app", SQL: "INSERT INTO t(x) VALUES ('once') RETURNING id", RequestID: 77}
	var firstID any
	for i := range 2 {
		resp := rc.call(t, uint64(10+i), q)
		page, ok := resp.(*wire.RowsPage)
		if !ok || len(page.Rows) != 1 || !page.Done {
			t.Fatalf("attempt %d: %T %+v", i+1, resp, resp)
		}
		if i == 0 {
			firstID = page.Rows[0][0]
		} else if page.Rows[0][0] != firstID {
			t.Fatalf("retry answered id %v, first answer was %v", page.Rows[0][0], firstID)
		}
	}
	if got := count(t, db, 5*time.Second, `SELECT count(*) FROM t`); got != 1 {
		t.Fatalf("%d rows after a retried writing query, want 1", got)
	}
	// Without a request id each query is a new write.
	q.RequestID = 0
	rc.call(t, 20, q)
	if got := count(t, db, 5*time.Second, `SELECT count(*) FROM t`); got != 2 {
		t.Fatalf("%d rows, want 2", got)
	}
}

// connectAs performs the handshake as client clientID (0: let the server choose) and
// returns the connection and the client id the server confirmed.
func connectAs(tb testing.TB, addr string, clientID uint64) (*raw, uint64) {
	tb.Helper()
	rc := dial(tb, addr)
	rc.send(tb, 77, &wire.Hello{Version: wire.Version, ClientID: clientID, Name: "server_test"})
	_, m := rc.recv(tb)
	w, ok := m.(*wire.Welcome)
	if !ok || w.ClientID == 0 || (clientID != 0 && w.ClientID != clientID) {
		tb.Fatalf("handshake as %d: got %T %v", clientID, m, m)
	}
	return rc, w.ClientID
}

// A client whose connection broke with its Commit in flight asks, on a new connection,
// what became of it; the answer matches what the database holds.
func TestOutcomeOfACommitAfterTheConnectionBroke(t *testing.T) {
	node := startNode(t)
	db := openDB(t, node, "app")
	mustExec(t, db, 10*time.Second, `CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`)

	rc, client := connectAs(t, node.Addr(), 0)
	begun, ok := rc.call(t, 1, &wire.Begin{DB: "app"}).(*wire.TxBegun)
	if !ok {
		t.Fatalf("Begin: %T %v", begun, begun)
	}
	rc.call(t, 2, &wire.Exec{SQL: "INSERT INTO t(v) VALUES ('kept')", TxID: begun.TxID})
	committed, ok := rc.call(t, 3, &wire.Commit{TxID: begun.TxID, RequestID: 5}).(*wire.Result)
	if !ok || committed.Index == 0 {
		t.Fatalf("Commit: %T %v", committed, committed)
	}

	ask, _ := connectAs(t, node.Addr(), client)
	if r, ok := ask.call(t, 1, &wire.Outcome{DB: "app", RequestID: 5}).(*wire.Result); !ok || r.Index != committed.Index {
		t.Fatalf("outcome of the commit: %T %v, commit answered %v", r, r, committed)
	}
	wantError(t, ask.call(t, 2, &wire.Outcome{DB: "app", RequestID: 6}), wire.CodeNotCommitted)
	wantError(t, ask.call(t, 3, &wire.Outcome{DB: "app", RequestID: 0}), wire.CodeBadRequest)
	wantError(t, ask.call(t, 4, &wire.Outcome{DB: "never_written", RequestID: 5}), wire.CodeNotCommitted)
	// Another client's request ids are its own.
	other, _ := connectAs(t, node.Addr(), 0)
	wantError(t, other.call(t, 1, &wire.Outcome{DB: "app", RequestID: 5}), wire.CodeNotCommitted)

	// The connection vanishes right after the Commit was written, or a moment later: either
	// the commit took effect and the answer is its result, or it did not and never will.
	seen := map[string]int{}
	for i := range 12 {
		rc, _ := connectAs(t, node.Addr(), client)
		begun, ok := rc.call(t, 1, &wire.Begin{DB: "app"}).(*wire.TxBegun)
		if !ok {
			t.Fatalf("Begin: %T %v", begun, begun)
		}
		v := fmt.Sprintf("maybe-%d", i)
		rc.call(t, 2, &wire.Exec{SQL: "INSERT INTO t(v) VALUES (?)", Args: []wire.Value{v}, TxID: begun.TxID})
		reqID := uint64(100 + i)
		if i%4 != 3 { // every fourth: the connection vanishes before the Commit is sent
			rc.send(t, 3, &wire.Commit{TxID: begun.TxID, RequestID: reqID})
			time.Sleep(time.Duration(i%4) * 300 * time.Microsecond)
		}
		rc.vanish()
		// First the answer (it waits until the transaction has ended), then the table.
		answer := ask.call(t, uint64(10+i), &wire.Outcome{DB: "app", RequestID: reqID})
		rows := count(t, db, 5*time.Second, `SELECT count(*) FROM t WHERE v = ?`, v)
		switch m := answer.(type) {
		case *wire.Result:
			seen["committed"]++
			if rows != 1 || m.Index == 0 {
				t.Fatalf("attempt %d: outcome says committed at %d, the table has %d rows of it", i, m.Index, rows)
			}
		case *wire.Error:
			seen["not committed"]++
			if m.Code != wire.CodeNotCommitted || rows != 0 {
				t.Fatalf("attempt %d: outcome %v, the table has %d rows of it", i, m, rows)
			}
		default:
			t.Fatalf("attempt %d: %T %v", i, m, m)
		}
	}
	t.Logf("outcomes: %v", seen)
	if seen["not committed"] < 3 {
		t.Fatalf("the commits never sent were not all reported as not committed: %v", seen)
	}
}
