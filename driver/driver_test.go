package driver

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/wire"
)

func openDB(t *testing.T, n *sqlNode, params string) *sql.DB {
	db, err := sql.Open("tandem", "tandem://"+n.Addr()+"/app"+params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestParseDSN(t *testing.T) {
	cfg, err := ParseDSN("tandem://h1:1,h2:2/app?consistency=leader&timeout=5s&dial_timeout=1s&page_size=10&node=h2:2&name=x")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Client.Addrs) != 2 || cfg.Client.Addrs[1] != "h2:2" || cfg.DB != "app" || cfg.Consistency != client.LeaderLocal ||
		cfg.Client.RequestTimeout != 5*time.Second || cfg.Client.DialTimeout != time.Second || cfg.PageSize != 10 ||
		cfg.Node != "h2:2" || cfg.Client.Name != "x" {
		t.Fatalf("%+v", cfg)
	}
	for _, bad := range []string{"mysql://h/app", "tandem:///app", "tandem://h1", "tandem://h1/", "tandem://h/a/b",
		"tandem://h/app?consistency=weird", "tandem://h/app?timeout=x", "tandem://h/app?bogus=1", "tandem://h/app?page_size=-1"} {
		if _, err := ParseDSN(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if cfg, err := ParseDSN("tandem://h/app"); err != nil || cfg.Consistency != client.Linearizable {
		t.Fatal(cfg, err)
	}
}

func TestEndToEnd(t *testing.T) {
	n := newSQLNode(t)
	db := openDB(t, n, "?timeout=5s")
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, i INTEGER, f REAL, s TEXT, b BLOB, ok BOOLEAN, at DATETIME, d DATE)`); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2025, 3, 4, 5, 6, 7, 890000000, time.FixedZone("x", -7200))
	res, err := db.ExecContext(ctx, `INSERT INTO t (i, f, s, b, ok, at, d) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		int32(-7), float32(1.5), "héllo", []byte{0, 1, 2}, true, at, "2024-02-29")
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := res.LastInsertId(); id != 1 {
		t.Fatalf("last insert id %d", id)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t (i, s) VALUES (:i, :s)`, sql.Named("i", uint16(9)), sql.Named("s", nil)); err != nil {
		t.Fatal(err)
	}
	rows, err := db.QueryContext(ctx, `SELECT i, f, s, b, ok, at, d FROM t ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	cts, _ := rows.ColumnTypes()
	if cts[5].DatabaseTypeName() != "DATETIME" || cts[0].DatabaseTypeName() != "INTEGER" {
		t.Fatalf("decl types %s %s", cts[5].DatabaseTypeName(), cts[0].DatabaseTypeName())
	}
	var (
		i     int64
		f     float64
		s     sql.NullString
		b     []byte
		ok    sql.NullBool
		gotAt sql.NullTime
		d     sql.NullTime
	)
	if !rows.Next() {
		t.Fatal(rows.Err())
	}
	if err := rows.Scan(&i, &f, &s, &b, &ok, &gotAt, &d); err != nil {
		t.Fatal(err)
	}
	if i != -7 || f != 1.5 || s.String != "héllo" || !bytes.Equal(b, []byte{0, 1, 2}) || !ok.Bool ||
		!gotAt.Time.Equal(at) || !d.Time.Equal(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("row 1: %v %v %v %v %v %v %v", i, f, s, b, ok, gotAt, d)
	}
	if !rows.Next() {
		t.Fatal(rows.Err())
	}
	if err := rows.Scan(&i, &f, &s, &b, &ok, &gotAt, &d); err == nil {
		// f is NULL in row 2: scanning NULL into float64 must fail
		t.Fatal("NULL scanned into float64")
	}
	rows.Close()
	var cnt int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM t WHERE i = 9 AND s IS NULL`).Scan(&cnt); err != nil || cnt != 1 {
		t.Fatal(cnt, err)
	}

	// SQLite errors come back typed.
	_, err = db.ExecContext(ctx, `INSERT INTO t (id) VALUES (1)`)
	var we *wire.Error
	if !errors.As(err, &we) || !errors.Is(err, client.ErrSQLite) || !strings.Contains(we.Message, "UNIQUE") {
		t.Fatalf("got %v", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t (i) VALUES (?)`, struct{}{}); err == nil {
		t.Fatal("struct argument accepted")
	}
}

func TestPaging(t *testing.T) {
	n := newSQLNode(t)
	db := openDB(t, n, "?page_size=3")
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE p (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := db.ExecContext(ctx, `INSERT INTO p VALUES (?)`, i); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := db.QueryContext(ctx, `SELECT x FROM p ORDER BY x`)
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for rows.Next() {
		var x int
		rows.Scan(&x)
		got = append(got, x)
	}
	if rows.Err() != nil || len(got) != 10 || got[9] != 9 {
		t.Fatal(got, rows.Err())
	}

	// The DSN's page_size reaches the queries of read-write transactions too (found by a
	// QA pass: they got the server's 512).
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var count int
	txRows, err := tx.QueryContext(ctx, `SELECT x FROM p ORDER BY x`)
	if err != nil {
		t.Fatal(err)
	}
	for txRows.Next() {
		count++
	}
	if txRows.Err() != nil || count != 10 {
		t.Fatal(count, txRows.Err())
	}
	if got := n.pageSize.Load(); got != 3 {
		t.Fatalf("a query in a transaction asked for pages of %d rows, want the DSN's 3", got)
	}
}

func TestTransactions(t *testing.T) {
	n := newSQLNode(t)
	db := openDB(t, n, "")
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE a (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO a VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	var c int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM a`).Scan(&c); err != nil || c != 1 {
		t.Fatal(c, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM a`).Scan(&c); err != nil || c != 0 {
		t.Fatal("rolled back row visible", c, err)
	}
	tx, err = db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	if err != nil {
		t.Fatal(err)
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO a VALUES (?)`)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := st.ExecContext(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM a`).Scan(&c); err != nil || c != 3 {
		t.Fatal("committed rows", c, err)
	}
	if _, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadUncommitted}); err == nil {
		t.Fatal("read uncommitted accepted")
	}
	// Read-only transactions: TestReadOnlyTransactions in the root package (a real cluster).
}

func TestPreparedOutsideTx(t *testing.T) {
	n := newSQLNode(t)
	db := openDB(t, n, "")
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE s (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PrepareContext(ctx, `INSERT INTO nope VALUES (?)`); !errors.Is(err, client.ErrSQLite) {
		t.Fatalf("prepare of a bad statement: %v", err)
	}
	st, err := db.PrepareContext(ctx, `INSERT INTO s VALUES (?)`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < 5; i++ {
		if _, err := st.ExecContext(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	q, err := db.PrepareContext(ctx, `SELECT sum(x) FROM s WHERE x >= ?`)
	if err != nil {
		t.Fatal(err)
	}
	var sum int
	if err := q.QueryRowContext(ctx, 3).Scan(&sum); err != nil || sum != 7 {
		t.Fatal(sum, err)
	}
}

func TestManyConnsShareOneClient(t *testing.T) {
	n := newSQLNode(t)
	db := openDB(t, n, "")
	ctx := context.Background()
	db.SetMaxOpenConns(16)
	if _, err := db.ExecContext(ctx, `CREATE TABLE c (x INTEGER)`); err != nil {
		t.Fatal(err)
	}
	var conns []*sql.Conn
	for i := 0; i < 8; i++ {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.ExecContext(ctx, `INSERT INTO c VALUES (?)`, i); err != nil {
				t.Error(err)
			}
			if err := c.PingContext(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if db.Stats().OpenConnections < 8 {
		t.Fatalf("open connections %d", db.Stats().OpenConnections)
	}
	for _, c := range conns {
		c.Close()
	}
	if a := n.Accepts(); a != 1 {
		t.Fatalf("%d TCP connections for %d sql connections", a, len(conns))
	}
}

func TestConnectorAndOpenDB(t *testing.T) {
	n := newSQLNode(t)
	cn, err := NewConnector(Config{Client: client.Config{Addrs: []string{n.Addr()}}, DB: "app", Consistency: client.Stale})
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(cn)
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	var one int
	if err := db.QueryRowContext(WithConsistency(ctx, client.LeaderLocal), `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatal(one, err)
	}
	if err := db.QueryRowContext(WithMinIndex(ctx, 1), `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Fatal(one, err)
	}
	db.Close()
	if _, err := cn.Connect(ctx); err == nil {
		t.Fatal("connect after close")
	}
	if _, err := NewConnector(Config{DB: "x"}); err == nil {
		t.Fatal("no addrs accepted")
	}
}

func TestLegacyOpen(t *testing.T) {
	n := newSQLNode(t)
	c, err := (&Driver{}).Open("tandem://" + n.Addr() + "/app")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.(interface{ Ping(context.Context) error }).Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestToTime(t *testing.T) {
	want := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, s := range []string{"2024-01-02T03:04:05Z", "2024-01-02 03:04:05", "2024-01-02T03:04:05", "2024-01-02 05:04:05+02:00"} {
		if got, ok := toTime(s).(time.Time); !ok || !got.Equal(want) {
			t.Errorf("%q: %v", s, toTime(s))
		}
	}
	if toTime("yesterday") != "yesterday" {
		t.Error("garbage converted")
	}
	if got := toTime(int64(0)).(time.Time); !got.Equal(time.Unix(0, 0)) {
		t.Error("unix seconds")
	}
	if !isTimeType("timestamp") || !isTimeType("DATE") || isTimeType("DATA") || isTimeType("") {
		t.Error("isTimeType")
	}
}
