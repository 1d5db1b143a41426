package wire

import (
	"encoding/binary"
	"fmt"
)

// MsgType identifies a frame's message.
type MsgType uint8

// Message types. The numbers are part of the protocol and never change.
const (
	TypeHello       MsgType = 1
	TypeWelcome     MsgType = 2
	TypeLeaderReq   MsgType = 3
	TypeLeaderInfo  MsgType = 4
	TypeClusterReq  MsgType = 5
	TypeClusterInfo MsgType = 6
	TypeStatusReq   MsgType = 7
	TypeNodeStatus  MsgType = 8
	TypeExec        MsgType = 9
	TypeResult      MsgType = 10
	TypeQuery       MsgType = 11
	TypeRowsPage    MsgType = 12
	TypeNext        MsgType = 13
	TypeCloseCursor MsgType = 14
	TypeBegin       MsgType = 15
	TypeTxBegun     MsgType = 16
	TypeCommit      MsgType = 17
	TypeRollback    MsgType = 18
	TypePrepare     MsgType = 19
	TypePrepared    MsgType = 20
	TypeCloseStmt   MsgType = 21
	TypeJoin        MsgType = 22
	TypeRemove      MsgType = 23
	TypeTransfer    MsgType = 24
	TypeOK          MsgType = 25
	TypeError       MsgType = 26
	TypeRedirect    MsgType = 27
	TypeOutcome     MsgType = 28
	TypeCancel      MsgType = 29
	TypeBeginRead   MsgType = 30

	maxType = TypeBeginRead
)

var typeNames = [...]string{
	TypeHello: "Hello", TypeWelcome: "Welcome", TypeLeaderReq: "LeaderReq", TypeLeaderInfo: "LeaderInfo",
	TypeClusterReq: "ClusterReq", TypeClusterInfo: "ClusterInfo", TypeStatusReq: "StatusReq",
	TypeNodeStatus: "NodeStatus", TypeExec: "Exec", TypeResult: "Result", TypeQuery: "Query",
	TypeRowsPage: "RowsPage", TypeNext: "Next", TypeCloseCursor: "CloseCursor", TypeBegin: "Begin",
	TypeTxBegun: "TxBegun", TypeCommit: "Commit", TypeRollback: "Rollback", TypePrepare: "Prepare",
	TypePrepared: "Prepared", TypeCloseStmt: "CloseStmt", TypeJoin: "Join", TypeRemove: "Remove",
	TypeTransfer: "Transfer", TypeOK: "OK", TypeError: "Error", TypeRedirect: "Redirect",
	TypeOutcome: "Outcome", TypeCancel: "Cancel", TypeBeginRead: "BeginRead",
}

// Known reports whether t is a message type of this protocol version.
func (t MsgType) Known() bool { return t >= TypeHello && t <= maxType }

func (t MsgType) String() string {
	if t.Known() {
		return typeNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Message is implemented by a pointer to each message struct.
type Message interface {
	Type() MsgType
	// MarshalAppend appends the message's payload (without frame header) to b.
	MarshalAppend(b []byte) []byte
	// Unmarshal decodes a payload into the message, replacing all its fields. It never
	// panics; it rejects truncated input, trailing bytes and impossible counts.
	Unmarshal(p []byte) error
}

// New returns a new zero message of type t, or nil if t is unknown.
func New(t MsgType) Message {
	switch t {
	case TypeHello:
		return new(Hello)
	case TypeWelcome:
		return new(Welcome)
	case TypeLeaderReq:
		return new(LeaderReq)
	case TypeLeaderInfo:
		return new(LeaderInfo)
	case TypeClusterReq:
		return new(ClusterReq)
	case TypeClusterInfo:
		return new(ClusterInfo)
	case TypeStatusReq:
		return new(StatusReq)
	case TypeNodeStatus:
		return new(NodeStatus)
	case TypeExec:
		return new(Exec)
	case TypeResult:
		return new(Result)
	case TypeQuery:
		return new(Query)
	case TypeRowsPage:
		return new(RowsPage)
	case TypeNext:
		return new(Next)
	case TypeCloseCursor:
		return new(CloseCursor)
	case TypeBegin:
		return new(Begin)
	case TypeTxBegun:
		return new(TxBegun)
	case TypeCommit:
		return new(Commit)
	case TypeRollback:
		return new(Rollback)
	case TypePrepare:
		return new(Prepare)
	case TypePrepared:
		return new(Prepared)
	case TypeCloseStmt:
		return new(CloseStmt)
	case TypeJoin:
		return new(Join)
	case TypeRemove:
		return new(Remove)
	case TypeTransfer:
		return new(Transfer)
	case TypeOK:
		return new(OK)
	case TypeError:
		return new(Error)
	case TypeRedirect:
		return new(Redirect)
	case TypeOutcome:
		return new(Outcome)
	case TypeCancel:
		return new(Cancel)
	case TypeBeginRead:
		return new(BeginRead)
	}
	return nil
}

// Decode decodes a frame's payload into a new message of the frame's type.
func Decode(f Frame) (Message, error) {
	m := New(f.Type)
	if m == nil {
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, uint8(f.Type))
	}
	if err := m.Unmarshal(f.Payload); err != nil {
		return nil, err
	}
	return m, nil
}

// Consistency selects how a read is served.
type Consistency uint8

// Consistency levels.
const (
	Linearizable Consistency = 0 // leader, read-index: sees every write acknowledged before it started
	LeaderLocal  Consistency = 1 // leader's local state, no round trip
	Stale        Consistency = 2 // any node's local state
)

func (c Consistency) String() string {
	switch c {
	case Linearizable:
		return "linearizable"
	case LeaderLocal:
		return "leader"
	case Stale:
		return "stale"
	}
	return fmt.Sprintf("Consistency(%d)", uint8(c))
}

// ---- handshake ----

// Hello is the client's first frame. ClientID 0 asks the server to assign one; a client
// reconnecting passes the one it was given so its request ids keep de-duplicating.
type Hello struct {
	Version  uint16
	ClientID uint64
	Name     string // free text for logs, e.g. program name
}

// Welcome accepts a Hello.
type Welcome struct {
	Version    uint16
	ClientID   uint64
	NodeID     uint64 // the node answering
	LeaderID   uint64 // 0 when unknown
	LeaderAddr string
}

func (*Hello) Type() MsgType { return TypeHello }
func (m *Hello) MarshalAppend(b []byte) []byte {
	b = appendU16(b, m.Version)
	b = appendU64(b, m.ClientID)
	return appendString(b, m.Name)
}
func (m *Hello) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Hello{Version: d.u16("version"), ClientID: d.u64("client id"), Name: d.str("name")}
	return d.done(TypeHello)
}

func (*Welcome) Type() MsgType { return TypeWelcome }
func (m *Welcome) MarshalAppend(b []byte) []byte {
	b = appendU16(b, m.Version)
	b = appendU64(b, m.ClientID)
	b = appendU64(b, m.NodeID)
	b = appendU64(b, m.LeaderID)
	return appendString(b, m.LeaderAddr)
}
func (m *Welcome) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Welcome{Version: d.u16("version"), ClientID: d.u64("client id"), NodeID: d.u64("node id"),
		LeaderID: d.u64("leader id"), LeaderAddr: d.str("leader addr")}
	return d.done(TypeWelcome)
}

// ---- cluster ----

// LeaderReq asks the node which node leads.
type LeaderReq struct{}

// LeaderInfo names the leader as the answering node knows it (ID 0: unknown).
type LeaderInfo struct {
	ID   uint64
	Term uint64
	Addr string
}

// ClusterReq asks for the membership.
type ClusterReq struct{}

// Member is one node of the cluster.
type Member struct {
	ID     uint64
	Addr   string
	Role   string // "voter", "learner", ...
	Leader bool
}

// ClusterInfo lists the members.
type ClusterInfo struct {
	LeaderID uint64
	Members  []Member
}

// StatusReq asks the answering node for its own status.
type StatusReq struct{}

// NodeStatus is one node's view of itself.
type NodeStatus struct {
	ID, Term, Leader, Commit, Applied uint64
	Addr                              string
	Healthy                           bool
	Problem                           string // why not healthy
	Entries                           uint64 // replicated entries proposed by this node
	Requests                          uint64 // requests those entries carried (Requests/Entries = batch size)
	// This node's port: client connections open now, and TLS handshakes completed since the
	// node started (clients and peers) with how many of them resumed a session.
	OpenConns, Handshakes, Resumed uint64
}

func (*LeaderReq) Type() MsgType                   { return TypeLeaderReq }
func (m *LeaderReq) MarshalAppend(b []byte) []byte { return b }
func (m *LeaderReq) Unmarshal(p []byte) error {
	d := decoder{p: p}
	return d.done(TypeLeaderReq)
}

func (*LeaderInfo) Type() MsgType { return TypeLeaderInfo }
func (m *LeaderInfo) MarshalAppend(b []byte) []byte {
	b = appendU64(b, m.ID)
	b = appendU64(b, m.Term)
	return appendString(b, m.Addr)
}
func (m *LeaderInfo) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = LeaderInfo{ID: d.u64("id"), Term: d.u64("term"), Addr: d.str("addr")}
	return d.done(TypeLeaderInfo)
}

func (*ClusterReq) Type() MsgType                   { return TypeClusterReq }
func (m *ClusterReq) MarshalAppend(b []byte) []byte { return b }
func (m *ClusterReq) Unmarshal(p []byte) error {
	d := decoder{p: p}
	return d.done(TypeClusterReq)
}

func (*ClusterInfo) Type() MsgType { return TypeClusterInfo }
func (m *ClusterInfo) MarshalAppend(b []byte) []byte {
	b = appendU64(b, m.LeaderID)
	b = binary.AppendUvarint(b, uint64(len(m.Members)))
	for _, mb := range m.Members {
		b = appendU64(b, mb.ID)
		b = appendString(b, mb.Addr)
		b = appendString(b, mb.Role)
		b = appendBool(b, mb.Leader)
	}
	return b
}
func (m *ClusterInfo) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = ClusterInfo{LeaderID: d.u64("leader id")}
	if n := d.count("members", 11); n > 0 {
		m.Members = make([]Member, n)
		for i := range m.Members {
			m.Members[i] = Member{ID: d.u64("member id"), Addr: d.str("member addr"),
				Role: d.str("member role"), Leader: d.boolean("member leader")}
		}
	}
	if err := d.done(TypeClusterInfo); err != nil {
		*m = ClusterInfo{}
		return err
	}
	return nil
}

func (*StatusReq) Type() MsgType                   { return TypeStatusReq }
func (m *StatusReq) MarshalAppend(b []byte) []byte { return b }
func (m *StatusReq) Unmarshal(p []byte) error {
	d := decoder{p: p}
	return d.done(TypeStatusReq)
}

func (*NodeStatus) Type() MsgType { return TypeNodeStatus }
func (m *NodeStatus) MarshalAppend(b []byte) []byte {
	b = appendU64(b, m.ID)
	b = appendU64(b, m.Term)
	b = appendU64(b, m.Leader)
	b = appendU64(b, m.Commit)
	b = appendU64(b, m.Applied)
	b = appendString(b, m.Addr)
	b = appendBool(b, m.Healthy)
	b = appendString(b, m.Problem)
	b = appendU64(b, m.Entries)
	b = appendU64(b, m.Requests)
	b = appendU64(b, m.OpenConns)
	b = appendU64(b, m.Handshakes)
	return appendU64(b, m.Resumed)
}
func (m *NodeStatus) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = NodeStatus{ID: d.u64("id"), Term: d.u64("term"), Leader: d.u64("leader"), Commit: d.u64("commit"),
		Applied: d.u64("applied"), Addr: d.str("addr"), Healthy: d.boolean("healthy"), Problem: d.str("problem"),
		Entries: d.u64("entries"), Requests: d.u64("requests"), OpenConns: d.u64("open conns"),
		Handshakes: d.u64("handshakes"), Resumed: d.u64("resumed")}
	return d.done(TypeNodeStatus)
}

// ---- SQL ----

// Exec runs a statement (usually a write) and returns its Result. Exactly one of SQL and
// StmtID is set. Outside a transaction (TxID 0) it is autocommit and goes through the
// leader's group commit; RequestID (per ClientID) makes a retry apply at most once.
type Exec struct {
	DB            string
	SQL           string
	StmtID        uint64 // a statement from Prepare on this connection, instead of SQL
	Args          []Value
	RequestID     uint64 // 0: no de-duplication
	TxID          uint64 // 0: autocommit
	Consistency   Consistency
	TimeoutMillis uint32 // 0: none; the server drops the request if not started in time
}

// Result is the outcome of an Exec or a Commit.
type Result struct {
	Columns      []string
	DeclTypes    []string
	Rows         [][]Value
	LastInsertID int64
	RowsAffected int64
	Index        uint64 // raft index of the entry that carried the write (for MinIndex); 0 if none
}

// Query runs a read and streams its rows in pages (RowsPage; Next for the following ones).
type Query struct {
	DB            string
	SQL           string
	StmtID        uint64
	Args          []Value
	Consistency   Consistency
	PageSize      uint32 // rows per page; 0: server default
	TxID          uint64 // read inside an interactive transaction
	MinIndex      uint64 // read-your-writes: serve only once this index is applied
	TimeoutMillis uint32
	// RequestID de-duplicates a query that turns out to write (INSERT ... RETURNING sent as
	// a query), as Exec.RequestID does; 0 = none.
	RequestID uint64
}

// RowsPage is one page of a query's rows. Columns and DeclTypes are sent on the first page
// only. Done means no more pages: the cursor is already closed.
type RowsPage struct {
	Cursor    uint64
	Columns   []string
	DeclTypes []string
	Rows      [][]Value
	Done      bool
}

// Next asks for the next page of a cursor.
type Next struct{ Cursor uint64 }

// CloseCursor closes a cursor before it is done; answered by OK.
type CloseCursor struct{ Cursor uint64 }

// Begin starts an interactive transaction, bound to this connection (closing the connection
// rolls it back).
type Begin struct{ DB string }

// BeginRead starts a read-only transaction, bound to this connection: its queries (Query
// with its TxID) all see the one state the node had applied when it began, and it holds no
// writer, so it may run on a follower (Consistency Stale). Consistency and MinIndex choose
// that state as for a Query. Answered by TxBegun; ended by Commit or Rollback (both answer
// as for a transaction that wrote nothing), by the connection's end, or after the node's
// idle timeout without a query. Exec in it is refused.
type BeginRead struct {
	DB          string
	Consistency Consistency
	MinIndex    uint64
}

// TxBegun answers Begin and BeginRead.
type TxBegun struct{ TxID uint64 }

// Commit commits a transaction; answered by Result (RowsAffected summed, Index set).
type Commit struct {
	TxID      uint64
	RequestID uint64
}

// Outcome asks the leader what became of a write of this client (ClientID of its Hello)
// whose answer it lost: typically a Commit in flight when its connection broke (the
// transaction belonged to that connection, so the Commit cannot be sent again). Answered by
// the first outcome (Result), or Error{NotCommitted} when the leader knows it was not
// committed and never will be.
type Outcome struct {
	DB        string
	RequestID uint64
}

// Rollback abandons a transaction; answered by OK.
type Rollback struct{ TxID uint64 }

// Cancel asks the node to stop the request with id RequestID of this connection, whose
// caller gave up: a queued request does not start, a running statement is interrupted.
// Answered by OK whether or not the request was still running (its own answer, if any, still
// comes).
type Cancel struct{ RequestID uint64 }

// Prepare prepares a statement on this connection.
type Prepare struct {
	DB  string
	SQL string
}

// Prepared answers Prepare.
type Prepared struct {
	StmtID    uint64
	NumParams uint32
	Columns   []string
}

// CloseStmt releases a prepared statement; answered by OK.
type CloseStmt struct{ StmtID uint64 }

func (*Exec) Type() MsgType { return TypeExec }
func (m *Exec) MarshalAppend(b []byte) []byte {
	b = appendString(b, m.DB)
	b = appendString(b, m.SQL)
	b = appendU64(b, m.StmtID)
	b = appendValues(b, m.Args)
	b = appendU64(b, m.RequestID)
	b = appendU64(b, m.TxID)
	b = appendU8(b, uint8(m.Consistency))
	return appendU32(b, m.TimeoutMillis)
}
func (m *Exec) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Exec{DB: d.str("db"), SQL: d.str("sql"), StmtID: d.u64("stmt id"), Args: d.values("args", true),
		RequestID: d.u64("request id"), TxID: d.u64("tx id"), Consistency: Consistency(d.u8("consistency")),
		TimeoutMillis: d.u32("timeout")}
	if err := d.done(TypeExec); err != nil {
		*m = Exec{}
		return err
	}
	return nil
}

func (*Result) Type() MsgType { return TypeResult }
func (m *Result) MarshalAppend(b []byte) []byte {
	b = appendStrings(b, m.Columns)
	b = appendStrings(b, m.DeclTypes)
	b = appendRows(b, m.Rows)
	b = appendI64(b, m.LastInsertID)
	b = appendI64(b, m.RowsAffected)
	return appendU64(b, m.Index)
}
func (m *Result) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Result{Columns: d.strings("columns"), DeclTypes: d.strings("decl types"), Rows: d.rows(),
		LastInsertID: d.i64("last insert id"), RowsAffected: d.i64("rows affected"), Index: d.u64("index")}
	if err := d.done(TypeResult); err != nil {
		*m = Result{}
		return err
	}
	return nil
}

func (*Query) Type() MsgType { return TypeQuery }
func (m *Query) MarshalAppend(b []byte) []byte {
	b = appendString(b, m.DB)
	b = appendString(b, m.SQL)
	b = appendU64(b, m.StmtID)
	b = appendValues(b, m.Args)
	b = appendU8(b, uint8(m.Consistency))
	b = appendU32(b, m.PageSize)
	b = appendU64(b, m.TxID)
	b = appendU64(b, m.MinIndex)
	b = appendU32(b, m.TimeoutMillis)
	return appendU64(b, m.RequestID)
}
func (m *Query) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Query{DB: d.str("db"), SQL: d.str("sql"), StmtID: d.u64("stmt id"), Args: d.values("args", true),
		Consistency: Consistency(d.u8("consistency")), PageSize: d.u32("page size"), TxID: d.u64("tx id"),
		MinIndex: d.u64("min index"), TimeoutMillis: d.u32("timeout"), RequestID: d.u64("request id")}
	if err := d.done(TypeQuery); err != nil {
		*m = Query{}
		return err
	}
	return nil
}

func (*RowsPage) Type() MsgType { return TypeRowsPage }
func (m *RowsPage) MarshalAppend(b []byte) []byte {
	b = appendU64(b, m.Cursor)
	b = appendStrings(b, m.Columns)
	b = appendStrings(b, m.DeclTypes)
	b = appendRows(b, m.Rows)
	return appendBool(b, m.Done)
}
func (m *RowsPage) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = RowsPage{Cursor: d.u64("cursor"), Columns: d.strings("columns"), DeclTypes: d.strings("decl types"),
		Rows: d.rows(), Done: d.boolean("done")}
	if err := d.done(TypeRowsPage); err != nil {
		*m = RowsPage{}
		return err
	}
	return nil
}

func (*Next) Type() MsgType                   { return TypeNext }
func (m *Next) MarshalAppend(b []byte) []byte { return appendU64(b, m.Cursor) }
func (m *Next) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Next{Cursor: d.u64("cursor")}
	return d.done(TypeNext)
}

func (*CloseCursor) Type() MsgType                   { return TypeCloseCursor }
func (m *CloseCursor) MarshalAppend(b []byte) []byte { return appendU64(b, m.Cursor) }
func (m *CloseCursor) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = CloseCursor{Cursor: d.u64("cursor")}
	return d.done(TypeCloseCursor)
}

func (*Begin) Type() MsgType                   { return TypeBegin }
func (m *Begin) MarshalAppend(b []byte) []byte { return appendString(b, m.DB) }
func (m *Begin) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Begin{DB: d.str("db")}
	return d.done(TypeBegin)
}

func (*BeginRead) Type() MsgType { return TypeBeginRead }
func (m *BeginRead) MarshalAppend(b []byte) []byte {
	b = appendString(b, m.DB)
	b = appendU8(b, uint8(m.Consistency))
	return appendU64(b, m.MinIndex)
}
func (m *BeginRead) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = BeginRead{DB: d.str("db"), Consistency: Consistency(d.u8("consistency")), MinIndex: d.u64("min index")}
	return d.done(TypeBeginRead)
}

func (*TxBegun) Type() MsgType                   { return TypeTxBegun }
func (m *TxBegun) MarshalAppend(b []byte) []byte { return appendU64(b, m.TxID) }
func (m *TxBegun) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = TxBegun{TxID: d.u64("tx id")}
	return d.done(TypeTxBegun)
}

func (*Commit) Type() MsgType { return TypeCommit }
func (m *Commit) MarshalAppend(b []byte) []byte {
	b = appendU64(b, m.TxID)
	return appendU64(b, m.RequestID)
}
func (m *Commit) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Commit{TxID: d.u64("tx id"), RequestID: d.u64("request id")}
	return d.done(TypeCommit)
}

func (*Outcome) Type() MsgType { return TypeOutcome }
func (m *Outcome) MarshalAppend(b []byte) []byte {
	b = appendString(b, m.DB)
	return appendU64(b, m.RequestID)
}
func (m *Outcome) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Outcome{DB: d.str("db"), RequestID: d.u64("request id")}
	return d.done(TypeOutcome)
}

func (*Rollback) Type() MsgType                   { return TypeRollback }
func (m *Rollback) MarshalAppend(b []byte) []byte { return appendU64(b, m.TxID) }
func (m *Rollback) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Rollback{TxID: d.u64("tx id")}
	return d.done(TypeRollback)
}

func (*Cancel) Type() MsgType                   { return TypeCancel }
func (m *Cancel) MarshalAppend(b []byte) []byte { return appendU64(b, m.RequestID) }
func (m *Cancel) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Cancel{RequestID: d.u64("request id")}
	return d.done(TypeCancel)
}

func (*Prepare) Type() MsgType { return TypePrepare }
func (m *Prepare) MarshalAppend(b []byte) []byte {
	b = appendString(b, m.DB)
	return appendString(b, m.SQL)
}
func (m *Prepare) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Prepare{DB: d.str("db"), SQL: d.str("sql")}
	return d.done(TypePrepare)
}

func (*Prepared) Type() MsgType { return TypePrepared }
func (m *Prepared) MarshalAppend(b []byte) []byte {
	b = appendU64(b, m.StmtID)
	b = appendU32(b, m.NumParams)
	return appendStrings(b, m.Columns)
}
func (m *Prepared) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Prepared{StmtID: d.u64("stmt id"), NumParams: d.u32("params"), Columns: d.strings("columns")}
	if err := d.done(TypePrepared); err != nil {
		*m = Prepared{}
		return err
	}
	return nil
}

func (*CloseStmt) Type() MsgType                   { return TypeCloseStmt }
func (m *CloseStmt) MarshalAppend(b []byte) []byte { return appendU64(b, m.StmtID) }
func (m *CloseStmt) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = CloseStmt{StmtID: d.u64("stmt id")}
	return d.done(TypeCloseStmt)
}

// ---- membership ----

// Join adds a node (as a learner, promoted once caught up); answered by OK.
type Join struct {
	ID   uint64
	Addr string
}

// Remove removes a node; answered by OK.
type Remove struct{ ID uint64 }

// Transfer moves leadership to node ID (0: the most up-to-date voter); answered by the new
// LeaderInfo.
type Transfer struct{ ID uint64 }

func (*Join) Type() MsgType { return TypeJoin }
func (m *Join) MarshalAppend(b []byte) []byte {
	b = appendU64(b, m.ID)
	return appendString(b, m.Addr)
}
func (m *Join) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Join{ID: d.u64("id"), Addr: d.str("addr")}
	return d.done(TypeJoin)
}

func (*Remove) Type() MsgType                   { return TypeRemove }
func (m *Remove) MarshalAppend(b []byte) []byte { return appendU64(b, m.ID) }
func (m *Remove) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Remove{ID: d.u64("id")}
	return d.done(TypeRemove)
}

func (*Transfer) Type() MsgType                   { return TypeTransfer }
func (m *Transfer) MarshalAppend(b []byte) []byte { return appendU64(b, m.ID) }
func (m *Transfer) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Transfer{ID: d.u64("id")}
	return d.done(TypeTransfer)
}

// ---- generic responses ----

// OK is the empty success response.
type OK struct{}

// Redirect tells the client that another node leads: send the request there.
type Redirect struct {
	LeaderID   uint64
	LeaderAddr string
}

func (*OK) Type() MsgType                   { return TypeOK }
func (m *OK) MarshalAppend(b []byte) []byte { return b }
func (m *OK) Unmarshal(p []byte) error {
	d := decoder{p: p}
	return d.done(TypeOK)
}

func (*Redirect) Type() MsgType { return TypeRedirect }
func (m *Redirect) MarshalAppend(b []byte) []byte {
	b = appendU64(b, m.LeaderID)
	return appendString(b, m.LeaderAddr)
}
func (m *Redirect) Unmarshal(p []byte) error {
	d := decoder{p: p}
	*m = Redirect{LeaderID: d.u64("leader id"), LeaderAddr: d.str("leader addr")}
	return d.done(TypeRedirect)
}

// Error returns the redirect as an error (Code NotLeader), for callers that give up.
func (m *Redirect) Error() string {
	return fmt.Sprintf("tandem: not the leader; leader is %d at %q", m.LeaderID, m.LeaderAddr)
}

// Is makes errors.Is(redirect, CodeNotLeader) true.
func (m *Redirect) Is(target error) bool {
	c, ok := target.(ErrCode)
	return ok && c == CodeNotLeader
}
