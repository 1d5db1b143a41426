package stats

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/wire"
)

func near(got, want, relTol float64) bool {
	return math.Abs(got-want) <= relTol*math.Abs(want)+1e-9
}

// 1..10000 µs, one each: p50 = 5 ms, p99 = 9.9 ms, mean = 5.0005 ms, max = 10 ms.
func TestPercentilesKnown(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := NewRecorder(t0)
	for i := 1; i <= 10000; i++ {
		r.Record(t0.Add(time.Duration(i)*99*time.Microsecond), time.Duration(i)*time.Microsecond)
	}
	s := r.Finish(t0.Add(time.Second))
	if s.Ops != 10000 || s.Errors != 0 {
		t.Fatalf("ops %d errors %d", s.Ops, s.Errors)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p50", s.P50Ms, 5}, {"p90", s.P90Ms, 9}, {"p99", s.P99Ms, 9.9}, {"p99.9", s.P999Ms, 9.99},
		{"mean", s.MeanMs, 5.0005}, {"max", s.MaxMs, 10}, {"ops/s", s.OpsPerSec, 10000},
	} {
		if !near(c.got, c.want, 0.002) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if len(s.Series) != 1 || s.Series[0].Ops != 10000 {
		t.Fatalf("series %+v", s.Series)
	}
}

func TestSeriesPerSecond(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := NewRecorder(t0)
	// second 0: 100 ops of 1 ms; second 1: nothing; second 2: 10 ops of 20 ms and 3 errors;
	// second 3 (partial, until 3.5 s): 1 op of 2 ms.
	for i := range 100 {
		r.Record(t0.Add(time.Duration(i)*time.Millisecond), time.Millisecond)
	}
	for i := range 10 {
		r.Record(t0.Add(2*time.Second+time.Duration(i)*time.Millisecond), 20*time.Millisecond)
	}
	for range 3 {
		r.RecordError(t0.Add(2500*time.Millisecond), errors.New("boom"))
	}
	if p := r.Progress(t0.Add(3100 * time.Millisecond)); p.Ops != 110 || p.Errors != 3 || p.OpsPerSec != 10 {
		t.Fatalf("progress %+v", p)
	}
	r.Record(t0.Add(3200*time.Millisecond), 2*time.Millisecond)
	s := r.Finish(t0.Add(3500 * time.Millisecond))
	want := []Point{
		{Second: 0, SpanS: 1, Ops: 100, P50Ms: 1, P99Ms: 1, MaxMs: 1},
		{Second: 1, SpanS: 1},
		{Second: 2, SpanS: 1, Ops: 10, Errors: 3, P50Ms: 20, P99Ms: 20, MaxMs: 20},
		{Second: 3, SpanS: 0.5, Ops: 1, P50Ms: 2, P99Ms: 2, MaxMs: 2},
	}
	if len(s.Series) != len(want) {
		t.Fatalf("series %+v", s.Series)
	}
	for i, p := range s.Series {
		w := want[i]
		if p.Second != w.Second || p.SpanS != w.SpanS || p.Ops != w.Ops || p.Errors != w.Errors ||
			!near(p.P50Ms, w.P50Ms, 0.002) || !near(p.P99Ms, w.P99Ms, 0.002) || !near(p.MaxMs, w.MaxMs, 0.002) {
			t.Errorf("second %d: %+v, want %+v", i, p, w)
		}
	}
	if !near(s.OpsPerSec, 111/3.5, 1e-9) {
		t.Errorf("ops/s %v", s.OpsPerSec)
	}
	if s.ByKind[KindOther] != 3 || s.First[KindOther] != "boom" {
		t.Errorf("by kind %v first %v", s.ByKind, s.First)
	}
}

func TestConcurrentRecording(t *testing.T) {
	t0 := time.Now()
	r := NewRecorder(t0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				r.Record(time.Now(), time.Millisecond)
			}
			r.RecordError(time.Now(), client.ErrNotLeader)
		}()
	}
	wg.Wait()
	s := r.Finish(time.Now())
	if s.Ops != 8000 || s.ByKind[KindNotLeader] != 8 {
		t.Fatalf("%d ops, %v", s.Ops, s.ByKind)
	}
}

func TestEmpty(t *testing.T) {
	t0 := time.Unix(0, 0)
	s := NewRecorder(t0).Finish(t0)
	if s.Ops != 0 || s.P99Ms != 0 || s.OpsPerSec != 0 || len(s.Series) != 0 {
		t.Fatalf("%+v", s)
	}
	if Rate(10, 0) != 0 || Rate(10, 2*time.Second) != 5 || Ratio(1, 0) != 0 || Ratio(6, 3) != 2 {
		t.Fatal("Rate/Ratio")
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Kind
	}{
		{nil, ""},
		{&wire.Error{Code: wire.CodeSQLite, SQLiteCode: 5, Message: "whatever"}, KindBusy},
		{&wire.Error{Code: wire.CodeSQLite, SQLiteCode: 1, Message: "database is locked"}, KindBusy},
		{errors.New("sqlite: step: database is locked (5)"), KindBusy},
		{&wire.Error{Code: wire.CodeSQLite, SQLiteCode: 19, Message: "UNIQUE constraint failed"}, KindSQLite},
		{fmt.Errorf("exec: %w", &wire.Error{Code: wire.CodeNotLeader}), KindNotLeader},
		{client.ErrNotLeader, KindNotLeader},
		{fmt.Errorf("%w: %w", &wire.Error{Code: wire.CodeOutcomeUnknown}, context.DeadlineExceeded), KindOutcomeUnknown},
		{fmt.Errorf("%w: %w", &wire.Error{Code: wire.CodeUnavailable}, &wire.Error{Code: wire.CodeNotLeader}), KindUnavailable},
		{&wire.Error{Code: wire.CodeDeadline}, KindDeadline},
		{fmt.Errorf("op: %w", context.DeadlineExceeded), KindDeadline},
		{&wire.Error{Code: wire.CodeTryAgain}, KindTryAgain},
		{&wire.Error{Code: wire.CodeInternal}, KindOther},
		{errors.New("sql: no rows in result set"), KindOther},
	} {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

func TestClamp(t *testing.T) {
	t0 := time.Unix(0, 0)
	r := NewRecorder(t0)
	r.Record(t0, 0)
	r.Record(t0, 2*time.Hour)
	s := r.Finish(t0.Add(time.Second))
	if s.Ops != 2 || !near(s.MaxMs, 3600000, 1e-9) {
		t.Fatalf("%+v", s)
	}
}
