package sqlite

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
)

// FuzzApplyChangeset: corrupt or hostile changesets must give an error (or
// apply cleanly), never crash, and never leave a transaction open.
func FuzzApplyChangeset(f *testing.F) {
	dir := f.TempDir()
	src, err := Open(filepath.Join(dir, "src.db"), OpenOptions{})
	if err != nil {
		f.Fatal(err)
	}
	defer src.Close()
	mustExec(f, src, schema)
	s, err := src.CreateSession()
	if err != nil {
		f.Fatal(err)
	}
	mustExec(f, src, `INSERT INTO pk VALUES (1, 'a', x'00'); INSERT INTO nopk VALUES (1, 2);
		INSERT INTO wr VALUES ('k', 1, 2.5); UPDATE pk SET v = 'b' WHERE id = 1`)
	cs, err := s.Changeset()
	if err != nil {
		f.Fatal(err)
	}
	s.Close()
	f.Add(cs)
	f.Add(cs[:len(cs)/2])
	f.Add([]byte{'T', 3, 1, 0, 0, 'p', 'k', 0, 18, 0})
	f.Add([]byte{'T', 0xff, 0xff, 0xff, 0xff, 0x7f})

	// With foreign keys the library applies; without, applyDirect does.
	var dsts []*Conn
	for i, fk := range []bool{true, false} {
		dst, err := Open(filepath.Join(dir, fmt.Sprintf("dst%d.db", i)), OpenOptions{DisableTriggers: true, ForeignKeys: fk})
		if err != nil {
			f.Fatal(err)
		}
		defer dst.Close()
		mustExec(f, dst, schema)
		dsts = append(dsts, dst)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, dst := range dsts {
			mustExec(t, dst, "BEGIN")
			err := dst.ApplyChangeset(data)
			mustExec(t, dst, "ROLLBACK")
			var se *Error
			var ce *ConflictError
			if err != nil && !errors.As(err, &se) && !errors.As(err, &ce) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			if !dst.Autocommit() {
				t.Fatal("transaction left open")
			}
		}
	})
}
