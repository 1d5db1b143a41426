package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// samples holds one filled-in value of every message type (and some empty ones).
func samples() []Message {
	rows := [][]Value{
		{int64(1), "a", 2.5, []byte{0, 1}, nil},
		{int64(-1 << 62), "", math.Inf(-1), []byte{}, int64(math.MinInt64)},
	}
	return []Message{
		&Hello{Version: Version, ClientID: 7, Name: "test"},
		&Welcome{Version: Version, ClientID: 7, NodeID: 2, LeaderID: 1, LeaderAddr: "127.0.0.1:9001"},
		&LeaderReq{},
		&LeaderInfo{ID: 1, Term: 9, Addr: "h:1"},
		&ClusterReq{},
		&ClusterInfo{LeaderID: 1, Members: []Member{{ID: 1, Addr: "a:1", Role: "voter", Leader: true}, {ID: 2, Addr: "b:2", Role: "learner"}}},
		&ClusterInfo{},
		&StatusReq{},
		&NodeStatus{ID: 1, Term: 2, Leader: 1, Commit: 100, Applied: 99, Addr: "a:1", Healthy: false, Problem: "diverged", Entries: 5, Requests: 50},
		&Exec{DB: "app", SQL: "INSERT INTO t VALUES (?, :x)", Args: []Value{int64(42), Named{Name: "x", Value: "y"}}, RequestID: 3, TxID: 4, Consistency: LeaderLocal, TimeoutMillis: 5000},
		&Exec{DB: "app", StmtID: 9},
		&Result{Columns: []string{"a", "b", "c", "d", "e"}, DeclTypes: []string{"INTEGER", "TEXT", "REAL", "BLOB", ""}, Rows: rows, LastInsertID: -3, RowsAffected: 2, Index: 77},
		&Result{},
		&Query{DB: "app", SQL: "SELECT 1", Args: []Value{nil, 1.5}, Consistency: Stale, PageSize: 100, TxID: 1, MinIndex: 55, TimeoutMillis: 1},
		&RowsPage{Cursor: 5, Columns: []string{"x"}, DeclTypes: []string{"DATETIME"}, Rows: [][]Value{{"2020-01-01T00:00:00Z"}}, Done: true},
		&RowsPage{Cursor: 5, Rows: [][]Value{nil, {nil}}},
		&Next{Cursor: 5},
		&CloseCursor{Cursor: 5},
		&Begin{DB: "app"},
		&BeginRead{DB: "app", Consistency: Stale, MinIndex: 9},
		&TxBegun{TxID: 12},
		&Commit{TxID: 12, RequestID: 13},
		&Outcome{DB: "app", RequestID: 14},
		&Cancel{RequestID: 15},
		&Rollback{TxID: 12},
		&Prepare{DB: "app", SQL: "SELECT ?"},
		&Prepared{StmtID: 3, NumParams: 1, Columns: []string{"?"}},
		&CloseStmt{StmtID: 3},
		&Join{ID: 4, Addr: "d:4"},
		&Remove{ID: 4},
		&Transfer{ID: 2},
		&OK{},
		&Error{Code: CodeSQLite, SQLiteCode: 19, SQLiteExtended: 2067, Message: "UNIQUE constraint failed: t.a"},
		&Redirect{LeaderID: 1, LeaderAddr: "a:1"},
	}
}

func TestRoundTrip(t *testing.T) {
	seen := map[MsgType]bool{}
	for _, m := range samples() {
		seen[m.Type()] = true
		p := m.MarshalAppend([]byte("prefix"))
		if !bytes.HasPrefix(p, []byte("prefix")) {
			t.Fatalf("%s: MarshalAppend lost the prefix", m.Type())
		}
		p = p[len("prefix"):]
		got := New(m.Type())
		if err := got.Unmarshal(p); err != nil {
			t.Fatalf("%s: %v", m.Type(), err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("%s: round trip\n got %#v\nwant %#v", m.Type(), got, m)
		}
		// Trailing garbage is refused.
		if err := New(m.Type()).Unmarshal(append(append([]byte{}, p...), 0)); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: trailing byte accepted: %v", m.Type(), err)
		}
		// Every truncation is refused.
		for i := 0; i < len(p); i++ {
			if err := New(m.Type()).Unmarshal(p[:i]); err == nil {
				t.Fatalf("%s: truncated payload (%d of %d bytes) accepted", m.Type(), i, len(p))
			}
		}
		// Through a frame.
		var buf bytes.Buffer
		w := NewWriter(&buf, 0)
		if err := w.WriteMsg(99, m); err != nil {
			t.Fatal(err)
		}
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		f, err := NewReader(&buf, 0).ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if f.ID != 99 || f.Type != m.Type() {
			t.Fatalf("frame header %d %s", f.ID, f.Type)
		}
		dm, err := Decode(f)
		if err != nil || !reflect.DeepEqual(dm, m) {
			t.Fatalf("%s: Decode: %v %#v", m.Type(), err, dm)
		}
	}
	for ty := MsgType(0); ty < 255; ty++ {
		if ty.Known() != seen[ty] {
			t.Errorf("type %s: known=%v, tested=%v", ty, ty.Known(), seen[ty])
		}
		if ty.Known() && New(ty).Type() != ty {
			t.Errorf("New(%s).Type() = %s", ty, New(ty).Type())
		}
	}
}

func TestValueEncoding(t *testing.T) {
	ts := time.Date(2024, 2, 29, 13, 4, 5, 123456789, time.FixedZone("x", 3600))
	in := []Value{int(-5), int8(1), int16(2), int32(3), uint8(4), uint16(5), uint32(6), uint(7), uint64(8), true, false, float32(0.5), ts}
	want := []Value{int64(-5), int64(1), int64(2), int64(3), int64(4), int64(5), int64(6), int64(7), int64(8), int64(1), int64(0), 0.5, "2024-02-29T12:04:05.123456789Z"}
	for _, v := range in {
		if err := CheckValue(v); err != nil {
			t.Fatal(err)
		}
	}
	p := (&Exec{Args: in}).MarshalAppend(nil)
	var e Exec
	if err := e.Unmarshal(p); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e.Args, want) {
		t.Fatalf("got %#v", e.Args)
	}
	for _, bad := range []Value{uint64(math.MaxUint64), struct{}{}, Named{Value: Named{}}, []int{1}} {
		if CheckValue(bad) == nil {
			t.Errorf("CheckValue(%#v) accepted", bad)
		}
	}
	// Named values are refused in rows.
	var r Result
	p = binary.AppendUvarint(nil, 0)
	p = binary.AppendUvarint(p, 0)
	p = binary.AppendUvarint(p, 1)
	p = binary.AppendUvarint(p, 1)
	p = append(p, tagNamed, 1, 'x', tagNull)
	p = append(p, make([]byte, 24)...)
	if err := r.Unmarshal(p); err == nil {
		t.Fatal("named value in a row accepted")
	}
	// Booleans other than 0/1 are refused.
	if err := (&RowsPage{}).Unmarshal(append(make([]byte, 8), 0, 0, 0, 2)); err == nil {
		t.Fatal("bad boolean accepted")
	}
}

func TestOverlongCount(t *testing.T) {
	p := binary.AppendUvarint(nil, 1<<40) // columns
	if err := (&Result{}).Unmarshal(p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v", err)
	}
	p = binary.AppendUvarint(nil, 1<<62) // string length
	if err := (&Begin{}).Unmarshal(p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v", err)
	}
	p = append(make([]byte, 8), binary.AppendUvarint(nil, 3)...) // 3 members, none there
	if err := (&ClusterInfo{}).Unmarshal(p); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v", err)
	}
}

func frameBytes(n uint32, id uint64, ty byte, payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, n)
	b = binary.LittleEndian.AppendUint64(b, id)
	b = append(b, ty)
	return append(b, payload...)
}

func TestReaderErrors(t *testing.T) {
	cases := []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"empty", nil, 0, io.EOF},
		{"partial length", []byte{1, 0}, 0, io.ErrUnexpectedEOF},
		{"partial header", frameBytes(9, 1, 1, nil)[:8], 0, io.ErrUnexpectedEOF},
		{"partial payload", frameBytes(12, 1, byte(TypeOK), []byte{1}), 0, io.ErrUnexpectedEOF},
		{"short", frameBytes(8, 1, 1, nil), 0, ErrShortFrame},
		{"too large", frameBytes(DefaultMaxFrameSize+1, 1, 1, nil), 0, ErrFrameTooLarge},
		{"too large custom", frameBytes(100, 1, 1, make([]byte, 91)), 99, ErrFrameTooLarge},
		{"unknown type", frameBytes(9, 1, 200, nil), 0, ErrUnknownType},
		{"zero type", frameBytes(9, 1, 0, nil), 0, ErrUnknownType},
	}
	for _, c := range cases {
		_, err := NewReader(bytes.NewReader(c.in), c.max).ReadFrame()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// Several frames back to back, then a clean EOF.
	var in []byte
	in = append(in, ClientPreamble...)
	in = append(in, frameBytes(9, 1, byte(TypeOK), nil)...)
	in = append(in, frameBytes(17, 2, byte(TypeNext), []byte{1, 0, 0, 0, 0, 0, 0, 0})...)
	br := bytes.NewReader(in)
	pre := make([]byte, 4)
	if _, err := io.ReadFull(br, pre); err != nil || string(pre) != ClientPreamble {
		t.Fatal(err)
	}
	r := NewReader(br, 0)
	for i, want := range []Frame{{ID: 1, Type: TypeOK, Payload: []byte{}}, {ID: 2, Type: TypeNext, Payload: []byte{1, 0, 0, 0, 0, 0, 0, 0}}} {
		f, err := r.ReadFrame()
		if err != nil || !reflect.DeepEqual(f, want) {
			t.Fatalf("frame %d: %v %#v", i, err, f)
		}
	}
	if _, err := r.ReadFrame(); err != io.EOF {
		t.Fatalf("want EOF, got %v", err)
	}
}

func TestWriterLimit(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 100)
	err := w.WriteMsg(1, &Begin{DB: strings.Repeat("x", 200)})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v", err)
	}
	if err := w.WriteFrame(1, TypeOK, make([]byte, 200)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v", err)
	}
	if err := w.WriteMsg(2, &OK{}); err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if buf.Len() != HeaderSize {
		t.Fatalf("wrote %d bytes", buf.Len())
	}
}

func TestErrorIs(t *testing.T) {
	var err error = &Error{Code: CodeSQLite, SQLiteCode: 19, SQLiteExtended: 2067, Message: "x"}
	if !errors.Is(err, CodeSQLite) || errors.Is(err, CodeNotLeader) {
		t.Fatal("Is by code")
	}
	if !errors.Is(err, &Error{Code: CodeSQLite, SQLiteCode: 19}) || errors.Is(err, &Error{Code: CodeSQLite, SQLiteCode: 5}) {
		t.Fatal("Is by sqlite code")
	}
	var re error = &Redirect{LeaderID: 1}
	if !errors.Is(re, CodeNotLeader) {
		t.Fatal("redirect is not-leader")
	}
	if (&Error{Code: 200}).Error() == "" || ErrCode(200).String() != "error code 200" {
		t.Fatal("unknown code")
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, m := range samples() {
		b, _ := AppendFrame(nil, 1, m, 0)
		f.Add(b)
	}
	f.Add(frameBytes(8, 0, 0, nil))
	f.Add(frameBytes(1<<30, 0, 1, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in), 1<<16)
		for {
			fr, err := r.ReadFrame()
			if err != nil {
				return
			}
			if !fr.Type.Known() {
				t.Fatalf("unknown type %d returned", fr.Type)
			}
			m, err := Decode(fr)
			if err != nil {
				continue
			}
			b, err := AppendFrame(nil, fr.ID, m, 0)
			if err != nil {
				t.Fatal(err)
			}
			fr2, err := NewReader(bytes.NewReader(b), 0).ReadFrame()
			if err != nil || fr2.ID != fr.ID || fr2.Type != fr.Type {
				t.Fatalf("re-read: %v", err)
			}
		}
	})
}

func FuzzUnmarshal(f *testing.F) {
	for _, m := range samples() {
		f.Add(uint8(m.Type()), m.MarshalAppend(nil))
	}
	f.Fuzz(func(t *testing.T, ty uint8, p []byte) {
		m := New(MsgType(ty))
		if m == nil {
			return
		}
		if err := m.Unmarshal(p); err != nil {
			return
		}
		// Whatever decodes re-encodes to a canonical form that decodes to the same thing.
		b1 := m.MarshalAppend(nil)
		m2 := New(MsgType(ty))
		if err := m2.Unmarshal(b1); err != nil {
			t.Fatalf("%s: re-decode: %v", m.Type(), err)
		}
		if b2 := m2.MarshalAppend(nil); !bytes.Equal(b1, b2) {
			t.Fatalf("%s: not canonical after one round", m.Type())
		}
	})
}
