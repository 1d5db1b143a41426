package client

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdb/tandem/wire"
	"github.com/tandemdb/tandem/wire/wiretest"
)

// fakeCluster is a set of fake nodes sharing one "state": a leader and a de-duplication
// table of applied writes.
type fakeCluster struct {
	t     *testing.T
	nodes []*fakeNode

	mu      sync.Mutex
	leader  uint64
	applied map[[2]uint64]wire.Result // (client id, request id) -> first outcome
	nextIdx uint64
	dials   atomic.Int64
}

type fakeNode struct {
	*wiretest.Server
	fc *fakeCluster
	// hook, when set, sees every request first; it returns true when it handled it.
	hook atomic.Pointer[func(c *wiretest.Conn, id uint64, m wire.Message) bool]

	mu      sync.Mutex
	reqs    []wire.Message
	cursors map[uint64][][]wire.Value
	nextCur uint64
	resumed []bool
}

func newFakeCluster(t *testing.T, n int, tlsCfg *tls.Config) *fakeCluster {
	fc := &fakeCluster{t: t, applied: map[[2]uint64]wire.Result{}}
	for i := 1; i <= n; i++ {
		fn := &fakeNode{fc: fc, cursors: map[uint64][][]wire.Value{}}
		s, err := wiretest.NewServer(uint64(i), tlsCfg, fn.handle)
		if err != nil {
			t.Fatal(err)
		}
		fn.Server = s
		fc.nodes = append(fc.nodes, fn)
		t.Cleanup(s.Close)
	}
	fc.setLeader(1)
	return fc
}

func (fc *fakeCluster) setLeader(id uint64) {
	fc.mu.Lock()
	fc.leader = id
	fc.mu.Unlock()
	addr := ""
	if id != 0 {
		addr = fc.nodes[id-1].Addr()
	}
	for _, n := range fc.nodes {
		n.SetLeader(id, addr)
	}
}

func (fc *fakeCluster) addrs() []string {
	var a []string
	for _, n := range fc.nodes {
		a = append(a, n.Addr())
	}
	return a
}

func (fc *fakeCluster) accepts() (total int64) {
	for _, n := range fc.nodes {
		total += n.Accepts()
	}
	return total
}

func (fc *fakeCluster) client(t *testing.T, mod func(*Config)) *Client {
	cfg := Config{Addrs: fc.addrs(), RequestTimeout: 5 * time.Second, DialTimeout: time.Second,
		Dialer: func(ctx context.Context, addr string) (net.Conn, error) {
			fc.dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (n *fakeNode) setHook(h func(c *wiretest.Conn, id uint64, m wire.Message) bool) {
	if h == nil {
		n.hook.Store(nil)
		return
	}
	n.hook.Store(&h)
}

func (n *fakeNode) requests() []wire.Message {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]wire.Message(nil), n.reqs...)
}

func (n *fakeNode) count(t wire.MsgType) int {
	k := 0
	for _, m := range n.requests() {
		if m.Type() == t {
			k++
		}
	}
	return k
}

// apply executes a write at most once per (client, request id).
func (fc *fakeCluster) apply(clientID uint64, m *wire.Exec) wire.Result {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	key := [2]uint64{clientID, m.RequestID}
	if r, ok := fc.applied[key]; ok && m.RequestID != 0 {
		return r
	}
	fc.nextIdx++
	r := wire.Result{RowsAffected: 1, LastInsertID: int64(fc.nextIdx), Index: fc.nextIdx}
	fc.applied[key] = r
	return r
}

// record notes the outcome of a write that took effect (a Commit the test's hook applies).
func (fc *fakeCluster) record(clientID, requestID uint64, r wire.Result) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.applied[[2]uint64{clientID, requestID}] = r
}

func (fc *fakeCluster) appliedCount() int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return len(fc.applied)
}

func (n *fakeNode) handle(c *wiretest.Conn, id uint64, m wire.Message) {
	n.mu.Lock()
	n.reqs = append(n.reqs, m)
	n.resumed = append(n.resumed, c.DidResume())
	n.mu.Unlock()
	if h := n.hook.Load(); h != nil && (*h)(c, id, m) {
		return
	}
	leaderOnly := func() bool {
		if n.IsLeader() {
			return true
		}
		lid, laddr := n.Leader()
		if lid == 0 {
			c.Reply(id, &wire.Error{Code: wire.CodeNotLeader})
		} else {
			c.Reply(id, &wire.Redirect{LeaderID: lid, LeaderAddr: laddr})
		}
		return false
	}
	switch m := m.(type) {
	case *wire.LeaderReq:
		lid, laddr := n.Leader()
		c.Reply(id, &wire.LeaderInfo{ID: lid, Term: 1, Addr: laddr})
	case *wire.StatusReq:
		lid, _ := n.Leader()
		c.Reply(id, &wire.NodeStatus{ID: n.NodeID, Leader: lid, Addr: n.Addr(), Healthy: true})
	case *wire.ClusterReq:
		if leaderOnly() {
			ci := wire.ClusterInfo{LeaderID: n.NodeID}
			for _, o := range n.fc.nodes {
				ci.Members = append(ci.Members, wire.Member{ID: o.NodeID, Addr: o.Addr(), Role: "voter", Leader: o.NodeID == n.NodeID})
			}
			c.Reply(id, &ci)
		}
	case *wire.Exec:
		if m.TxID != 0 {
			c.Reply(id, &wire.Result{RowsAffected: 1})
			return
		}
		if leaderOnly() {
			r := n.fc.apply(c.ClientID, m)
			c.Reply(id, &r)
		}
	case *wire.Query:
		if m.Consistency != wire.Stale && m.TxID == 0 && !leaderOnly() {
			return
		}
		// "count N" yields N rows (i, "row i").
		k, _ := strconv.Atoi(strings.TrimPrefix(m.SQL, "count "))
		var rows [][]wire.Value
		for i := 0; i < k; i++ {
			rows = append(rows, []wire.Value{int64(i), fmt.Sprintf("row %d", i)})
		}
		n.mu.Lock()
		n.nextCur++
		cur := n.nextCur
		n.mu.Unlock()
		page := n.page(cur, rows, int(m.PageSize))
		page.Columns, page.DeclTypes = []string{"i", "s"}, []string{"INTEGER", "TEXT"}
		c.Reply(id, page)
	case *wire.Next:
		n.mu.Lock()
		rows, ok := n.cursors[m.Cursor]
		n.mu.Unlock()
		if !ok {
			c.Reply(id, &wire.Error{Code: wire.CodeNoSuchCursor})
			return
		}
		c.Reply(id, n.page(m.Cursor, rows, 2))
	case *wire.CloseCursor:
		n.mu.Lock()
		delete(n.cursors, m.Cursor)
		n.mu.Unlock()
		c.Reply(id, &wire.OK{})
	case *wire.Begin:
		if leaderOnly() {
			c.Reply(id, &wire.TxBegun{TxID: 77})
		}
	case *wire.Commit:
		c.Reply(id, &wire.Result{RowsAffected: 3, Index: 5})
	case *wire.Outcome:
		if leaderOnly() {
			n.fc.mu.Lock()
			r, ok := n.fc.applied[[2]uint64{c.ClientID, m.RequestID}]
			n.fc.mu.Unlock()
			if !ok {
				c.Reply(id, &wire.Error{Code: wire.CodeNotCommitted})
				return
			}
			c.Reply(id, &r)
		}
	case *wire.Rollback, *wire.CloseStmt, *wire.Join, *wire.Remove:
		if leaderOnly() {
			c.Reply(id, &wire.OK{})
		}
	case *wire.Prepare:
		if leaderOnly() {
			c.Reply(id, &wire.Prepared{StmtID: 9, NumParams: uint32(strings.Count(m.SQL, "?"))})
		}
	case *wire.Transfer:
		if leaderOnly() {
			to := m.ID
			if to == 0 {
				to = n.NodeID%uint64(len(n.fc.nodes)) + 1
			}
			n.fc.setLeader(to)
			c.Reply(id, &wire.LeaderInfo{ID: to, Term: 2, Addr: n.fc.nodes[to-1].Addr()})
		}
	default:
		c.Reply(id, &wire.Error{Code: wire.CodeBadRequest, Message: "unexpected " + m.Type().String()})
	}
}

// page returns the next page (size rows, default 2) of rows and remembers the rest.
func (n *fakeNode) page(cur uint64, rows [][]wire.Value, size int) *wire.RowsPage {
	if size <= 0 {
		size = 2
	}
	p := &wire.RowsPage{Cursor: cur}
	if len(rows) <= size {
		p.Rows, p.Done = rows, true
		n.mu.Lock()
		delete(n.cursors, cur)
		n.mu.Unlock()
		return p
	}
	p.Rows = rows[:size]
	n.mu.Lock()
	n.cursors[cur] = rows[size:]
	n.mu.Unlock()
	return p
}

// testCerts makes a self-signed ECDSA certificate for 127.0.0.1 and the configs using it.
func testCerts(t *testing.T) (server, client *tls.Config) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tandem-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	pair := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	server = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS13, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	client = &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS13}
	return server, client
}

type tlsConnState = tls.ConnectionState
