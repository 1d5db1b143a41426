package sqlbench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tandemdb/tandem/bench/stats"
)

// Worker runs operations one after the other on its own connection. Op is never called
// concurrently on one Worker.
type Worker interface {
	Op(ctx context.Context) error
	Close() error
}

// Factory makes the workers of a run.
type Factory interface {
	NewWorker(ctx context.Context, id int) (Worker, error)
}

// LoopConfig drives Loop.
type LoopConfig struct {
	Name      string        // for Progress
	Workers   int           // concurrent workers, at least 1
	Duration  time.Duration // measured time; workers start no operation after it
	Warmup    time.Duration // unmeasured time before it
	OpTimeout time.Duration // limit of one operation (0: none)
	// ErrorPause is how long a worker waits after a failed operation before the next, so that
	// an unreachable cluster does not turn into a busy loop of instant failures. Default 10ms;
	// negative: no pause.
	ErrorPause time.Duration
	// Progress, if set, is called about every ProgressEvery (default 1s) from one goroutine.
	Progress      func(Progress)
	ProgressEvery time.Duration
	// AtStart, if set, is called (in its own goroutine) when the measured time starts, e.g. to
	// sample counters. It is not called when the run ends before; Loop waits for it to finish.
	AtStart func()
}

// Progress is the state of a running loop.
type Progress struct {
	Name    string
	Workers int
	Warmup  bool // still warming up: counts are zero
	stats.Progress
}

// Loop runs cfg.Workers workers from f until the warm-up and the duration have passed, or ctx
// is done, and returns the recording of the measured time. Operations still running when the
// time is up finish (within OpTimeout) and count; those cut short by ctx do not. When ctx
// ends the run early, Loop returns what it measured with ctx's error.
func Loop(ctx context.Context, f Factory, cfg LoopConfig) (stats.Summary, error) {
	if cfg.Workers < 1 {
		return stats.Summary{}, errors.New("sqlbench: at least one worker is needed")
	}
	if cfg.Duration <= 0 {
		return stats.Summary{}, errors.New("sqlbench: the duration must be positive")
	}
	if cfg.ErrorPause == 0 {
		cfg.ErrorPause = 10 * time.Millisecond
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	workers := make([]Worker, 0, cfg.Workers)
	defer func() {
		for _, w := range workers {
			_ = w.Close()
		}
	}()
	for i := range cfg.Workers {
		w, err := f.NewWorker(ctx, i)
		if err != nil {
			return stats.Summary{}, fmt.Errorf("worker %d: %w", i, err)
		}
		workers = append(workers, w)
	}

	t0 := time.Now()
	measureFrom := t0.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	rec := stats.NewRecorder(measureFrom)
	if cfg.AtStart != nil {
		// When Loop returns, AtStart has either finished or will never run.
		ran := make(chan struct{})
		t := time.AfterFunc(cfg.Warmup, func() { defer close(ran); cfg.AtStart() })
		defer func() {
			if !t.Stop() {
				<-ran
			}
		}()
	}

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runWorker(ctx, w, rec, measureFrom, end, cfg)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	var tick <-chan time.Time
	if cfg.Progress != nil {
		t := time.NewTicker(cfg.ProgressEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-done:
			finish := time.Now()
			if finish.Before(measureFrom) { // interrupted during warm-up
				finish = measureFrom
			}
			return rec.Finish(finish), ctx.Err()
		case now := <-tick:
			p := Progress{Name: cfg.Name, Workers: cfg.Workers}
			if now.Before(measureFrom) {
				p.Warmup = true
				p.Elapsed = now.Sub(t0)
			} else {
				p.Progress = rec.Progress(now)
			}
			cfg.Progress(p)
		}
	}
}

func runWorker(ctx context.Context, w Worker, rec *stats.Recorder, measureFrom, end time.Time, cfg LoopConfig) {
	for {
		start := time.Now()
		if !start.Before(end) || ctx.Err() != nil {
			return
		}
		opCtx, cancel := ctx, context.CancelFunc(func() {})
		if cfg.OpTimeout > 0 {
			opCtx, cancel = context.WithTimeout(ctx, cfg.OpTimeout)
		}
		err := w.Op(opCtx)
		cancel()
		stop := time.Now()
		if ctx.Err() != nil {
			return // interrupted: the operation's outcome says nothing about the system
		}
		if !start.Before(measureFrom) {
			if err != nil {
				rec.RecordError(stop, err)
			} else {
				rec.Record(stop, stop.Sub(start))
			}
		}
		if err != nil && cfg.ErrorPause > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(cfg.ErrorPause):
			}
		}
	}
}
