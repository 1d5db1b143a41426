package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// TestApplyTrimsRequestRecordsByTime: request records stay for RequestRetention of the
// entries' leader wall-clock time, whatever the number of ids in between, and go after it.
func TestApplyTrimsRequestRecordsByTime(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res := encodeResult(nil, &Result{RowsAffected: 1})
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).UnixMilli()
	retention := RequestRetention.Milliseconds()
	var ents []Entry
	id := uint64(0)
	// Entry i at t0 + i*retention/4: 100 requests of client 5 and one of client 6 each.
	for idx := uint64(1); idx <= 6; idx++ {
		cmd := &command{DB: testDB, ExecTerm: 1, Seq: idx, BaseIndex: idx - 1, WallTime: t0 + int64(idx-1)*retention/4}
		if idx == 1 {
			cmd.DDL = []string{"CREATE TABLE t(a)"}
		}
		for range 100 {
			id++
			cmd.Requests = append(cmd.Requests, requestRecord{ClientID: 5, RequestID: id, Result: res})
		}
		cmd.Requests = append(cmd.Requests, requestRecord{ClientID: 6, RequestID: idx, Result: res})
		ents = append(ents, Entry{Index: idx, Term: 1, Data: encodeCommand(nil, cmd)})
	}
	// In two calls, so that trimming happens across transactions too.
	if err := s.Apply(ents[:4]); err != nil {
		t.Fatal(err)
	}
	// Entry 4 is 3/4 of the retention after entry 1: nothing trimmed yet, whatever the ids.
	if n := internalInt(t, s, "SELECT count(*) FROM _tandem_requests"); n != 4*101 {
		t.Fatalf("%d records after 4 entries, want %d", n, 4*101)
	}
	if err := s.Apply(ents[4:]); err != nil {
		t.Fatal(err)
	}
	// Entry 6 is at t0 + 5/4 retention: entry 1's records (t0) are older than the retention,
	// entry 2's (t0 + retention/4) are exactly at its edge and stay.
	if n := internalInt(t, s, "SELECT count(*) FROM _tandem_requests"); n != 5*101 {
		t.Fatalf("%d records after 6 entries, want %d", n, 5*101)
	}
	if n := internalInt(t, s, "SELECT min(request_id) FROM _tandem_requests WHERE client_id = 5"); n != 101 {
		t.Fatalf("oldest kept request %d, want 101", n)
	}
	if s.AppliedIndex() != 6 {
		t.Fatalf("applied %d", s.AppliedIndex())
	}
}

// TestDecodeVersion1Command: entries written before WallTime existed still decode.
func TestDecodeVersion1Command(t *testing.T) {
	cmd := &command{DB: testDB, Node: 3, ExecTerm: 2, Seq: 9, BaseIndex: 4, LeaderTime: 77,
		Requests: []requestRecord{{ClientID: 1, RequestID: 2, Result: []byte{1}}}}
	v2 := encodeCommand(nil, cmd)
	// Version 1 is version 2 without the WallTime varint (a single 0 byte here), which sits
	// right after LeaderTime.
	head := []byte{CommandKind, commandVersion}
	head = binary.AppendUvarint(head, cmd.Node)
	head = binary.AppendUvarint(head, cmd.ExecTerm)
	head = binary.AppendUvarint(head, cmd.Seq)
	head = binary.AppendUvarint(head, cmd.BaseIndex)
	head = binary.AppendVarint(head, cmd.LeaderTime)
	if !bytes.HasPrefix(v2, head) || v2[len(head)] != 0 {
		t.Fatal("unexpected encoding layout")
	}
	v1 := append(append([]byte{CommandKind, 1}, head[2:]...), v2[len(head)+1:]...)
	got, err := decodeCommand(v1)
	if err != nil {
		t.Fatal(err)
	}
	if got.DB != testDB || got.Seq != 9 || got.WallTime != 0 || len(got.Requests) != 1 || got.LeaderTime != 77 {
		t.Fatalf("decoded %+v", got)
	}
	if _, err := decodeCommand(append([]byte{CommandKind, 3}, v2[2:]...)); err == nil {
		t.Fatal("an unknown version decoded")
	}
}

func TestApplyCorruptEntryDiverges(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	good := encodeCommand(nil, &command{DB: testDB, ExecTerm: 1, DDL: []string{"CREATE TABLE t(a)"}})
	bad := append([]byte(nil), good[:len(good)-1]...)
	err = s.Apply([]Entry{{Index: 1, Term: 1}, {Index: 2, Term: 1, Data: good}, {Index: 3, Term: 1, Data: bad}})
	if !errors.Is(err, ErrDiverged) {
		t.Fatalf("want ErrDiverged, got %v", err)
	}
	// Nothing of the failed call is committed.
	if s.AppliedIndex() != 0 || len(s.Databases()) != 0 {
		t.Fatalf("applied %d, databases %v", s.AppliedIndex(), s.Databases())
	}
	// A DDL that fails on apply diverges as well.
	s2, err := Open(Options{Dir: t.TempDir(), NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	dup := encodeCommand(nil, &command{DB: testDB, ExecTerm: 1, DDL: []string{"CREATE TABLE t(a)", "CREATE TABLE t(a)"}})
	if err := s2.Apply([]Entry{{Index: 1, Term: 1, Data: dup}}); !errors.Is(err, ErrDiverged) {
		t.Fatalf("want ErrDiverged, got %v", err)
	}
}
