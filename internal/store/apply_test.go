package store

import (
	"errors"
	"testing"
)

func TestApplyKeepsLastRequestsPerClient(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), NodeID: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res := encodeResult(nil, &Result{RowsAffected: 1})
	var ents []Entry
	base := uint64(0)
	id := uint64(0)
	for idx := uint64(1); idx <= 11; idx++ {
		cmd := &command{DB: testDB, ExecTerm: 1, Seq: idx, BaseIndex: base}
		if idx == 1 {
			cmd.DDL = []string{"CREATE TABLE t(a)"}
		}
		for range 100 {
			id++
			cmd.Requests = append(cmd.Requests, requestRecord{ClientID: 5, RequestID: id, Result: res})
		}
		cmd.Requests = append(cmd.Requests, requestRecord{ClientID: 6, RequestID: idx, Result: res})
		ents = append(ents, Entry{Index: idx, Term: 1, Data: encodeCommand(nil, cmd)})
		base = idx
	}
	// In two calls, so that trimming happens across transactions too.
	if err := s.Apply(ents[:4]); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ents[4:]); err != nil {
		t.Fatal(err)
	}
	// Ids 1..1100; the last trim was at id 1088 (a multiple of trimStride), which dropped
	// ids up to 1088-keepRequests = 88.
	if n := queryInt(t, s, "SELECT count(*) FROM _tandem_requests WHERE client_id = 5"); n != 1100-88 {
		t.Fatalf("client 5 keeps %d records, want %d", n, 1100-88)
	}
	if n := queryInt(t, s, "SELECT min(request_id) FROM _tandem_requests WHERE client_id = 5"); n != 89 {
		t.Fatalf("oldest kept request %d, want 89", n)
	}
	if n := queryInt(t, s, "SELECT count(*) FROM _tandem_requests WHERE client_id = 6"); n != 11 {
		t.Fatalf("client 6 keeps %d records", n)
	}
	if s.AppliedIndex() != 11 {
		t.Fatalf("applied %d", s.AppliedIndex())
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
