package wire

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// TestGoldenBytes pins the byte layout documented in docs/protocol.md.
func TestGoldenBytes(t *testing.T) {
	cases := []struct {
		m    Message
		want string
	}{
		{&Hello{Version: 1, ClientID: 7, Name: "ab"}, "0100" + "0700000000000000" + "02" + "6162"},
		{&Exec{DB: "d", SQL: "s", Args: []Value{nil, int64(-2), "x", Named{Name: "n", Value: 1.0}}, RequestID: 5, TxID: 0, Consistency: Stale, TimeoutMillis: 1000},
			"0164" + "0173" + "0000000000000000" + "04" + "00" + "0103" + "030178" + "05016e" + "02000000000000f03f" +
				"0500000000000000" + "0000000000000000" + "02" + "e8030000"},
		{&Error{Code: CodeSQLite, SQLiteCode: 19, SQLiteExtended: 2067, Message: "u"}, "01" + "13000000" + "13080000" + "0175"},
	}
	for _, c := range cases {
		if got := hex.EncodeToString(c.m.MarshalAppend(nil)); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.m.Type(), got, c.want)
		}
	}
	// A whole frame: OK with request id 3.
	b, _ := AppendFrame(nil, 3, &OK{}, 0)
	if want, _ := hex.DecodeString("09000000" + "0300000000000000" + "19"); !bytes.Equal(b, want) {
		t.Errorf("OK frame %x", b)
	}
}

func BenchmarkResultMarshal(b *testing.B) {
	r := benchResult()
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.MarshalAppend(buf[:0])
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkResultUnmarshal(b *testing.B) {
	p := benchResult().MarshalAppend(nil)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		var r Result
		if err := r.Unmarshal(p); err != nil {
			b.Fatal(err)
		}
	}
}

func benchResult() *Result {
	r := &Result{Columns: []string{"id", "name", "score", "data"}, DeclTypes: []string{"INTEGER", "TEXT", "REAL", "BLOB"}}
	for i := 0; i < 100; i++ {
		r.Rows = append(r.Rows, []Value{int64(i), "some name text", float64(i) / 3, []byte("0123456789")})
	}
	return r
}
