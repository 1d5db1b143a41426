// Package stats records operation latencies and errors for the benchmarks: percentiles,
// mean, max and rates over a whole run, a per-second time series, and errors counted by kind.
//
// Latencies go into an HDR histogram (github.com/HdrHistogram/hdrhistogram-go): memory is
// fixed (about 190 KiB per histogram, two per recorder) whatever the number of operations,
// recording is O(1), and every percentile is within 0.1% of the true value (3 significant
// digits). The histogram covers 1 µs to 1 h; a latency outside that range is clamped to it.
// Mean, max and counts are kept exactly beside the histogram.
package stats

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/wire"
)

// Kind is a class of error, used as a key of the error counts.
type Kind string

// Error kinds, from the most specific to the least.
const (
	KindBusy           Kind = "busy"            // SQLite "database is locked" / SQLITE_BUSY: must never reach a Tandem client
	KindOutcomeUnknown Kind = "outcome_unknown" // a write may or may not have been applied
	KindNotLeader      Kind = "not_leader"      // the node knew no leader
	KindTryAgain       Kind = "try_again"       // back-pressure: a queue was full
	KindDeadline       Kind = "deadline"        // the request's deadline passed (server or client side)
	KindUnavailable    Kind = "unavailable"     // no quorum, shutting down, or no node reachable
	KindSQLite         Kind = "sqlite"          // any other SQLite error (constraint, syntax, ...)
	KindOther          Kind = "other"           // everything else
)

// Kinds lists every kind in report order.
var Kinds = []Kind{KindBusy, KindOutcomeUnknown, KindNotLeader, KindTryAgain, KindDeadline, KindUnavailable, KindSQLite, KindOther}

// SQLite primary result codes that mean "locked".
const (
	sqliteBusy   = 5
	sqliteLocked = 6
)

// Classify returns the kind of err (nil gives ""). The outermost Tandem error code decides,
// so that "unavailable: ... not leader" counts as unavailable; a busy or locked SQLite error
// is recognised by its result code or by SQLite's own message text, wherever it sits.
func Classify(err error) Kind {
	if err == nil {
		return ""
	}
	var we *wire.Error
	if errors.As(err, &we) && we.Code == wire.CodeSQLite && (we.SQLiteCode == sqliteBusy || we.SQLiteCode == sqliteLocked) {
		return KindBusy
	}
	if msg := strings.ToLower(err.Error()); strings.Contains(msg, "database is locked") ||
		strings.Contains(msg, "database table is locked") || strings.Contains(msg, "sqlite_busy") ||
		strings.Contains(msg, "database is busy") {
		return KindBusy
	}
	if we != nil {
		switch we.Code {
		case wire.CodeOutcomeUnknown:
			return KindOutcomeUnknown
		case wire.CodeNotLeader:
			return KindNotLeader
		case wire.CodeTryAgain:
			return KindTryAgain
		case wire.CodeDeadline:
			return KindDeadline
		case wire.CodeUnavailable:
			return KindUnavailable
		case wire.CodeSQLite:
			return KindSQLite
		}
	}
	switch {
	case errors.Is(err, client.ErrOutcomeUnknown):
		return KindOutcomeUnknown
	case errors.Is(err, client.ErrNotLeader):
		return KindNotLeader
	case errors.Is(err, client.ErrTryAgain):
		return KindTryAgain
	case errors.Is(err, client.ErrDeadline), errors.Is(err, context.DeadlineExceeded):
		return KindDeadline
	case errors.Is(err, client.ErrUnavailable):
		return KindUnavailable
	case errors.Is(err, client.ErrSQLite):
		return KindSQLite
	}
	return KindOther
}

// Histogram range, in microseconds.
const (
	minMicros = 1
	maxMicros = int64(time.Hour / time.Microsecond)
	sigDigits = 3
)

func newHist() *hdr.Histogram { return hdr.New(minMicros, maxMicros, sigDigits) }

func micros(d time.Duration) int64 {
	us := d.Microseconds()
	if us < minMicros {
		return minMicros
	}
	if us > maxMicros {
		return maxMicros
	}
	return us
}

func ms(us int64) float64 { return float64(us) / 1000 }

// Point is one second of a run: operations and errors that completed in
// [Second, Second+1) seconds after the start, and the latencies of its successes.
type Point struct {
	Second int     `json:"second"`
	SpanS  float64 `json:"span_s"` // length covered: 1, except for a last, partial second
	Ops    int64   `json:"ops"`
	Errors int64   `json:"errors"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Summary is the outcome of a recording.
type Summary struct {
	Duration  time.Duration   // from the recorder's start to Finish
	Ops       int64           // successful operations
	Errors    int64           // failed operations
	ByKind    map[Kind]int64  // failed operations by kind (only kinds seen)
	OpsPerSec float64         // Ops / Duration
	MeanMs    float64         // exact mean latency of successes
	P50Ms     float64         // percentiles of successes' latency
	P90Ms     float64         //
	P99Ms     float64         //
	P999Ms    float64         //
	MaxMs     float64         // exact maximum
	Series    []Point         // one point per second, the last one possibly partial
	First     map[Kind]string // the first error message of each kind seen
}

// Progress is a cheap view of a running recorder.
type Progress struct {
	Elapsed   time.Duration
	Ops       int64
	Errors    int64
	OpsPerSec float64 // over the last complete second (or the whole run during the first)
}

// Recorder collects latencies and errors. It is safe for concurrent use; each call takes a
// mutex for well under a microsecond, which is negligible next to a network round trip.
type Recorder struct {
	mu      sync.Mutex
	start   time.Time
	hist    *hdr.Histogram // whole run
	win     *hdr.Histogram // current second
	cur     int            // current second
	curOps  int64
	curErrs int64
	series  []Point
	ops     int64
	errs    int64
	sumUs   float64
	maxUs   int64
	byKind  map[Kind]int64
	first   map[Kind]string
}

// NewRecorder returns a recorder whose time zero is start.
func NewRecorder(start time.Time) *Recorder {
	return &Recorder{start: start, hist: newHist(), win: newHist(), byKind: map[Kind]int64{}, first: map[Kind]string{}}
}

// Start returns the recorder's time zero.
func (r *Recorder) Start() time.Time { return r.start }

// advance closes every second before the one that contains end. Called with mu held.
func (r *Recorder) advance(end time.Time) {
	sec := int(end.Sub(r.start) / time.Second)
	if sec < 0 {
		sec = 0
	}
	for r.cur < sec {
		r.closeSecond()
	}
}

func (r *Recorder) closeSecond() {
	p := Point{Second: r.cur, SpanS: 1, Ops: r.curOps, Errors: r.curErrs}
	if r.win.TotalCount() > 0 {
		p.P50Ms = ms(r.win.ValueAtPercentile(50))
		p.P99Ms = ms(r.win.ValueAtPercentile(99))
		p.MaxMs = ms(r.win.Max())
	}
	r.series = append(r.series, p)
	r.win.Reset()
	r.curOps, r.curErrs = 0, 0
	r.cur++
}

// Record counts a success that ended at end and took d.
func (r *Recorder) Record(end time.Time, d time.Duration) {
	us := micros(d)
	r.mu.Lock()
	r.advance(end)
	_ = r.hist.RecordValue(us) // us is clamped into range: never fails
	_ = r.win.RecordValue(us)
	r.ops++
	r.curOps++
	r.sumUs += float64(us)
	if us > r.maxUs {
		r.maxUs = us
	}
	r.mu.Unlock()
}

// RecordError counts a failure that ended at end and returns its kind. Its latency is not
// part of the percentiles (a fast failure would make them look better).
func (r *Recorder) RecordError(end time.Time, err error) Kind {
	k := Classify(err)
	if k == "" {
		k = KindOther
	}
	r.mu.Lock()
	r.advance(end)
	r.errs++
	r.curErrs++
	r.byKind[k]++
	if _, ok := r.first[k]; !ok && err != nil {
		r.first[k] = err.Error()
	}
	r.mu.Unlock()
	return k
}

// Progress returns the counts so far, as of now.
func (r *Recorder) Progress(now time.Time) Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(now)
	p := Progress{Elapsed: now.Sub(r.start), Ops: r.ops, Errors: r.errs}
	if n := len(r.series); n > 0 {
		p.OpsPerSec = float64(r.series[n-1].Ops)
	} else {
		p.OpsPerSec = Rate(r.ops, p.Elapsed)
	}
	return p
}

// Finish closes the recording at end and summarizes it. The recorder must not be used after.
func (r *Recorder) Finish(end time.Time) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.advance(end)
	if rest := end.Sub(r.start) - time.Duration(r.cur)*time.Second; r.curOps > 0 || r.curErrs > 0 || rest > 0 {
		r.closeSecond()
		r.series[len(r.series)-1].SpanS = max(rest, 0).Seconds()
	}
	s := Summary{
		Duration: end.Sub(r.start),
		Ops:      r.ops,
		Errors:   r.errs,
		ByKind:   map[Kind]int64{},
		Series:   r.series,
		MaxMs:    ms(r.maxUs),
		First:    map[Kind]string{},
	}
	s.OpsPerSec = Rate(r.ops, s.Duration)
	if r.ops > 0 {
		s.MeanMs = r.sumUs / float64(r.ops) / 1000
		s.P50Ms = ms(r.hist.ValueAtPercentile(50))
		s.P90Ms = ms(r.hist.ValueAtPercentile(90))
		s.P99Ms = ms(r.hist.ValueAtPercentile(99))
		s.P999Ms = ms(r.hist.ValueAtPercentile(99.9))
		// The histogram reports the top of a value's bucket; never above the exact max.
		s.P50Ms, s.P90Ms = math.Min(s.P50Ms, s.MaxMs), math.Min(s.P90Ms, s.MaxMs)
		s.P99Ms, s.P999Ms = math.Min(s.P99Ms, s.MaxMs), math.Min(s.P999Ms, s.MaxMs)
	}
	for k, n := range r.byKind {
		s.ByKind[k] = n
		s.First[k] = r.first[k]
	}
	return s
}

// Rate returns n per second over d (0 for a non-positive d).
func Rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Ratio returns a/b, or 0 when b is 0.
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
