package store

import (
	"context"
	"testing"
	"time"
)

func TestCoalesceWindow(t *testing.T) {
	for _, tc := range []struct {
		batch     int
		round     time.Duration
		wait, gap time.Duration
	}{
		{batch: 0, round: 4 * time.Millisecond},
		{batch: 1, round: 4 * time.Millisecond}, // a lone writer never waits
		{batch: 2, round: 4 * time.Millisecond, wait: 2 * time.Millisecond, gap: 500 * time.Microsecond},
		{batch: 16, round: 400 * time.Microsecond, wait: 200 * time.Microsecond, gap: coalesceMinGap},
		{batch: 16, round: 40 * time.Millisecond, wait: coalesceMaxWait, gap: 5 * time.Millisecond},
	} {
		wait, gap := coalesceWindow(tc.batch, tc.round)
		if wait != tc.wait || gap != tc.gap {
			t.Errorf("coalesceWindow(%d, %v) = %v, %v; want %v, %v", tc.batch, tc.round, wait, gap, tc.wait, tc.gap)
		}
	}
}

// coalescingWriter is a writer with only what coalesce uses: its database's queue.
func coalescingWriter(t *testing.T, lastBatch int) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &writer{db: &database{queue: make(chan *job, 64), ctx: ctx}, lastBatch: lastBatch}
}

// coalesceReturns runs wr.coalesce and fails the test unless it returns within 10 s.
func coalesceReturns(t *testing.T, wr *writer, wait, gap time.Duration, failure string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wr.coalesce(wait, gap)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal(failure)
	}
}

// The requests the previous batch answered come back one by one, each within the gap: the
// writer waits for all of them even though the total wait is far longer than one gap.
func TestCoalesceWaitsForThePreviousBatchsClients(t *testing.T) {
	wr := coalescingWriter(t, 4)
	go func() {
		for range 4 {
			time.Sleep(20 * time.Millisecond)
			wr.db.queue <- &job{}
		}
	}()
	wr.coalesce(10*time.Second, 2*time.Second)
	if len(wr.pending) != 4 {
		t.Fatalf("%d requests pending after coalesce, want the 4 that came back", len(wr.pending))
	}
}

// Once the previous batch's clients are back, the writer takes what else is queued and
// starts; it does not wait out the gap or the deadline.
func TestCoalesceStopsWhenThePreviousBatchIsBack(t *testing.T) {
	wr := coalescingWriter(t, 2)
	wr.pending = []*job{{}} // queued while the previous batch ran
	for range 3 {
		wr.db.queue <- &job{}
	}
	coalesceReturns(t, wr, time.Hour, time.Hour, "coalesce waited although the previous batch's clients were back")
	if len(wr.pending) != 4 {
		t.Fatalf("%d requests pending, want 4 (1 queued before, 3 in the queue)", len(wr.pending))
	}
}

// Clients that do not come back cost one gap, not the whole wait.
func TestCoalesceGivesUpAfterAGap(t *testing.T) {
	wr := coalescingWriter(t, 8)
	wr.db.queue <- &job{}
	coalesceReturns(t, wr, time.Hour, 20*time.Millisecond, "coalesce did not give up after a gap without requests")
	if len(wr.pending) != 1 {
		t.Fatalf("%d requests pending, want 1", len(wr.pending))
	}
}

// The total wait bounds the coalescing even when requests keep trickling in.
func TestCoalesceStopsAtTheDeadline(t *testing.T) {
	wr := coalescingWriter(t, 50)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case wr.db.queue <- &job{}:
			case <-stop:
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	coalesceReturns(t, wr, 30*time.Millisecond, time.Hour, "coalesce did not stop at its deadline")
	if n := len(wr.pending); n == 0 || n >= 50 {
		t.Fatalf("%d requests pending, want some but fewer than the 50 it waited for", n)
	}
}
