// Package sqlbench runs the SQL workloads of `tandem bench sql` over database/sql, modelled
// on dqlite's dqlite-benchmark so that the two compare point for point:
//
//   - kvwrite:     INSERT OR REPLACE INTO model(key, value) VALUES (?, ?)
//   - kvread:      SELECT value FROM model WHERE key = ? (over keys written first)
//   - kvreadwrite: either of the above, 50/50
//   - txn:         an interactive transaction: read a key's value, then update it, commit
//
// on the table model(key TEXT, value TEXT, UNIQUE(key)). Keys are drawn uniformly from a key
// space of Config.Keys keys ("k000…0042", Config.KeySize bytes); values are Config.ValueSize
// bytes of text. Each worker owns one *sql.Conn. Run measures one workload at one worker
// count; Sweep runs several in turn. Both sample the nodes' Raft counters before and after to
// show group commit (entries per second, requests per entry).
package sqlbench

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemdb/tandem/bench/report"
	"github.com/tandemdb/tandem/bench/stats"
	"github.com/tandemdb/tandem/client"
)

// Workload names a workload.
type Workload string

// The workloads.
const (
	KVWrite     Workload = "kvwrite"
	KVRead      Workload = "kvread"
	KVReadWrite Workload = "kvreadwrite"
	Txn         Workload = "txn"
)

// Workloads lists every workload.
var Workloads = []Workload{KVWrite, KVRead, KVReadWrite, Txn}

// needsData reports whether the workload reads keys that must exist.
func (w Workload) needsData() bool { return w != KVWrite }

// ParseWorkloads parses a comma-separated list of workload names, or "all".
func ParseWorkloads(s string) ([]Workload, error) {
	if strings.TrimSpace(s) == "all" {
		return append([]Workload(nil), Workloads...), nil
	}
	var out []Workload
	seen := map[Workload]bool{}
	for _, p := range strings.Split(s, ",") {
		w := Workload(strings.TrimSpace(p))
		if w == "" {
			continue
		}
		ok := false
		for _, k := range Workloads {
			ok = ok || k == w
		}
		if !ok {
			return nil, fmt.Errorf("unknown workload %q (want kvwrite, kvread, kvreadwrite, txn or all)", w)
		}
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no workload given")
	}
	return out, nil
}

// ParseCounts parses a comma-separated list of positive worker counts ("1,2,4,8").
func ParseCounts(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 100000 {
			return nil, fmt.Errorf("%q is not a worker count (1 to 100000)", p)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no worker count given")
	}
	return out, nil
}

// Counters are a node's cumulative group-commit counters.
type Counters struct {
	Entries  uint64 // Raft entries this node proposed
	Requests uint64 // requests those entries carried
}

// StatusFunc returns the counters of every node it can reach, by node address.
type StatusFunc func(ctx context.Context) (map[string]Counters, error)

// NodeCounters returns a StatusFunc asking each of addrs for its status through c. Nodes
// that do not answer are left out; it fails only when none answers.
func NodeCounters(c *client.Client, addrs []string) StatusFunc {
	return func(ctx context.Context) (map[string]Counters, error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		out := map[string]Counters{}
		var errs []error
		for _, a := range addrs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				st, err := c.Status(sctx, a)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", a, err))
					return
				}
				out[a] = Counters{Entries: st.Entries, Requests: st.Requests}
			}()
		}
		wg.Wait()
		if len(out) == 0 {
			return nil, fmt.Errorf("no node status: %w", errors.Join(errs...))
		}
		return out, nil
	}
}

// delta sums after-before over the nodes present in both with counters that did not go
// backwards (a node restarted in between starts again from zero).
func delta(before, after map[string]Counters) (Counters, error) {
	var d Counters
	var skipped []string
	for a, b := range before {
		x, ok := after[a]
		if !ok || x.Entries < b.Entries || x.Requests < b.Requests {
			skipped = append(skipped, a)
			continue
		}
		d.Entries += x.Entries - b.Entries
		d.Requests += x.Requests - b.Requests
	}
	if len(skipped) > 0 {
		return d, fmt.Errorf("counters of %s unavailable or reset during the run", strings.Join(skipped, ", "))
	}
	return d, nil
}

// Config is one run of one workload.
type Config struct {
	DB        *sql.DB       // the cluster, through the "tandem" driver; required
	Workload  Workload      // required
	Workers   int           // concurrent workers, each with its own connection; default 1
	Duration  time.Duration // measured time; default 10s
	Warmup    time.Duration // unmeasured time before it
	OpTimeout time.Duration // limit of one operation; default 10s
	KeySize   int           // bytes per key; default 32
	ValueSize int           // bytes per value; default 1024
	Keys      int           // key space; default 10000. Reading workloads write all of them first.
	NoPrepare bool          // send SQL text with every operation instead of prepared statements
	SkipSetup bool          // the table and its keys already exist (Sweep sets up once)
	Seed      uint64        // random seed (0: random)
	Status    StatusFunc    // optional: group-commit counters
	Progress  func(Progress)
	// ProgressEvery is the period of Progress calls; default 1s.
	ProgressEvery time.Duration
}

func (c *Config) defaults() error {
	if c.DB == nil {
		return errors.New("sqlbench: Config.DB is required")
	}
	ok := false
	for _, w := range Workloads {
		ok = ok || w == c.Workload
	}
	if !ok {
		return fmt.Errorf("sqlbench: unknown workload %q", c.Workload)
	}
	if c.Workers == 0 {
		c.Workers = 1
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 10 * time.Second
	}
	if c.KeySize == 0 {
		c.KeySize = 32
	}
	if c.ValueSize == 0 {
		c.ValueSize = 1024
	}
	if c.Keys == 0 {
		c.Keys = 10000
	}
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	return c.Validate()
}

// Validate checks the sizes and counts.
func (c *Config) Validate() error {
	switch {
	case c.Workers < 0 || c.Duration < 0 || c.Warmup < 0 || c.OpTimeout < 0:
		return errors.New("workers and durations must not be negative")
	case c.Keys < 0:
		return errors.New("the key count must not be negative")
	case c.KeySize > 0 && c.KeySize < len(strconv.Itoa(max(c.Keys, 1)-1))+1:
		return fmt.Errorf("a key size of %d bytes is too small for %d keys", c.KeySize, c.Keys)
	case c.KeySize > 1<<20 || c.ValueSize < 0 || c.ValueSize > 64<<20:
		return errors.New("key size must be at most 1 MiB and value size 0 to 64 MiB")
	}
	return nil
}

// Result is one workload at one worker count.
type Result struct {
	Workload Workload
	Workers  int
	Stats    stats.Summary
	// Group commit: counter deltas over Seconds (between the two status samples). StatusErr
	// says why they are missing or partial.
	Counters  Counters
	Seconds   float64
	StatusErr error
}

// Report converts r to a report row.
func (r Result) Report() report.Run {
	run := report.FromStats(string(r.Workload), r.Workers, r.Stats)
	run.SetGroupCommit(r.Counters.Entries, r.Counters.Requests, r.Seconds)
	if r.StatusErr != nil {
		run.StatusError = r.StatusErr.Error()
	}
	return run
}

// Schema is the benchmark's table.
const Schema = `CREATE TABLE IF NOT EXISTS model(key TEXT, value TEXT, UNIQUE(key))`

// Setup creates the table and, for the reading workloads, writes every key of the key space
// (skipped when they are all there already).
func Setup(ctx context.Context, cfg Config) error {
	if err := cfg.defaults(); err != nil {
		return err
	}
	if _, err := cfg.DB.ExecContext(ctx, Schema); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	if !cfg.Workload.needsData() {
		return nil
	}
	return Prefill(ctx, cfg.DB, cfg.Keys, cfg.KeySize, cfg.ValueSize)
}

// Prefill writes keys 0..n-1 (INSERT OR IGNORE, many rows per statement) unless they all exist.
func Prefill(ctx context.Context, db *sql.DB, n, keySize, valueSize int) error {
	var have int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM model WHERE key BETWEEN ? AND ?`,
		Key(0, keySize), Key(n-1, keySize)).Scan(&have); err != nil {
		return fmt.Errorf("count keys: %w", err)
	}
	if have >= n {
		return nil
	}
	const perStmt = 256
	rng := rand.New(rand.NewPCG(1, 2))
	val := newValue(rng, valueSize)
	for i := 0; i < n; i += perStmt {
		m := min(perStmt, n-i)
		var q strings.Builder
		q.WriteString("INSERT OR IGNORE INTO model(key, value) VALUES ")
		args := make([]any, 0, 2*m)
		for j := range m {
			if j > 0 {
				q.WriteString(",")
			}
			q.WriteString("(?,?)")
			args = append(args, Key(i+j, keySize), val.next())
		}
		if _, err := db.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("prefill keys %d-%d: %w", i, i+m-1, err)
		}
	}
	return nil
}

// Key returns key i of the key space: "k" and i zero-padded to size bytes.
func Key(i, size int) string {
	s := strconv.Itoa(i)
	if pad := size - 1 - len(s); pad > 0 {
		return "k" + strings.Repeat("0", pad) + s
	}
	return "k" + s
}

// value makes distinct values of a fixed size cheaply: random text with a counter in front.
type value struct {
	buf []byte
	n   uint64
}

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

func newValue(rng *rand.Rand, size int) *value {
	b := make([]byte, size)
	for i := range b {
		b[i] = letters[rng.IntN(len(letters))]
	}
	return &value{buf: b}
}

func (v *value) next() string {
	v.n++
	c := strconv.AppendUint(nil, v.n, 36)
	copy(v.buf, c)
	return string(v.buf)
}

// Run sets up (unless cfg.SkipSetup) and measures one workload at one worker count.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.defaults(); err != nil {
		return Result{}, err
	}
	if !cfg.SkipSetup {
		if err := Setup(ctx, cfg); err != nil {
			return Result{}, err
		}
	}
	cfg.DB.SetMaxIdleConns(max(cfg.Workers, 2))
	res := Result{Workload: cfg.Workload, Workers: cfg.Workers}
	var before map[string]Counters
	var beforeAt time.Time
	var beforeErr error
	lc := LoopConfig{
		Name: string(cfg.Workload), Workers: cfg.Workers, Duration: cfg.Duration, Warmup: cfg.Warmup,
		OpTimeout: cfg.OpTimeout, Progress: cfg.Progress, ProgressEvery: cfg.ProgressEvery,
	}
	if cfg.Status != nil {
		lc.AtStart = func() {
			before, beforeErr = cfg.Status(ctx)
			beforeAt = time.Now()
		}
	}
	sum, err := Loop(ctx, &factory{cfg: cfg}, lc)
	res.Stats = sum
	if cfg.Status != nil { // Loop has waited for AtStart, if it ran
		switch {
		case beforeErr != nil:
			res.StatusErr = beforeErr
		case before == nil:
			res.StatusErr = errors.New("the run did not start")
		default:
			after, aerr := cfg.Status(context.WithoutCancel(ctx))
			res.Seconds = time.Since(beforeAt).Seconds()
			if aerr != nil {
				res.StatusErr = aerr
			} else {
				res.Counters, res.StatusErr = delta(before, after)
			}
		}
	}
	return res, err
}

// Sweep runs every workload at every worker count, in that order (all counts of the first
// workload, then the next), setting each workload up once. onResult, if set, sees each
// result as it comes. It stops at the first error, returning the results so far.
func Sweep(ctx context.Context, cfg Config, workloads []Workload, counts []int, onResult func(Result)) ([]Result, error) {
	var out []Result
	for _, wl := range workloads {
		c := cfg
		c.Workload = wl
		c.Workers = counts[0]
		if !c.SkipSetup {
			if err := Setup(ctx, c); err != nil {
				return out, fmt.Errorf("%s: setup: %w", wl, err)
			}
			c.SkipSetup = true
		}
		for _, n := range counts {
			c.Workers = n
			r, err := Run(ctx, c)
			if err != nil && r.Stats.Duration <= 0 {
				return out, fmt.Errorf("%s with %d workers: %w", wl, n, err)
			}
			out = append(out, r)
			if onResult != nil {
				onResult(r)
			}
			if err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// factory makes SQL workers.
type factory struct{ cfg Config }

func (f *factory) NewWorker(ctx context.Context, id int) (Worker, error) {
	seed := f.cfg.Seed + uint64(id)*0x9e3779b97f4a7c15
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	w := &sqlWorker{cfg: f.cfg, rng: rng, val: newValue(rng, f.cfg.ValueSize)}
	if err := w.open(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

const (
	qWrite  = `INSERT OR REPLACE INTO model(key, value) VALUES (?, ?)`
	qRead   = `SELECT value FROM model WHERE key = ?`
	qUpdate = `UPDATE model SET value = ? WHERE key = ?`
)

type sqlWorker struct {
	cfg             Config
	rng             *rand.Rand
	val             *value
	conn            *sql.Conn
	write, read, up *sql.Stmt // nil with NoPrepare
}

func (w *sqlWorker) open(ctx context.Context) error {
	cn, err := w.cfg.DB.Conn(ctx)
	if err != nil {
		return err
	}
	w.conn = cn
	if w.cfg.NoPrepare {
		return nil
	}
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{{&w.write, qWrite}, {&w.read, qRead}, {&w.up, qUpdate}} {
		st, err := cn.PrepareContext(ctx, p.q)
		if err != nil {
			w.Close()
			return fmt.Errorf("prepare %q: %w", p.q, err)
		}
		*p.dst = st
	}
	return nil
}

func (w *sqlWorker) Close() error {
	for _, st := range []*sql.Stmt{w.write, w.read, w.up} {
		if st != nil {
			st.Close()
		}
	}
	w.write, w.read, w.up = nil, nil, nil
	if w.conn == nil {
		return nil
	}
	err := w.conn.Close()
	w.conn = nil
	return err
}

func (w *sqlWorker) key() string { return Key(w.rng.IntN(w.cfg.Keys), w.cfg.KeySize) }

// Op runs one operation. A connection that database/sql gave up on is replaced before the
// next operation.
func (w *sqlWorker) Op(ctx context.Context) error {
	if w.conn == nil {
		if err := w.open(ctx); err != nil {
			return err
		}
	}
	var err error
	switch w.cfg.Workload {
	case KVWrite:
		err = w.doWrite(ctx)
	case KVRead:
		err = w.doRead(ctx)
	case KVReadWrite:
		if w.rng.IntN(2) == 0 {
			err = w.doRead(ctx)
		} else {
			err = w.doWrite(ctx)
		}
	case Txn:
		err = w.doTxn(ctx)
	}
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, driver.ErrBadConn) {
		w.Close()
	}
	return err
}

func (w *sqlWorker) exec(ctx context.Context, st *sql.Stmt, q string, args ...any) error {
	var err error
	if st != nil {
		_, err = st.ExecContext(ctx, args...)
	} else {
		_, err = w.conn.ExecContext(ctx, q, args...)
	}
	return err
}

func (w *sqlWorker) doWrite(ctx context.Context) error {
	return w.exec(ctx, w.write, qWrite, w.key(), w.val.next())
}

// errMissing is a read that found no row: the prefill did not hold.
var errMissing = errors.New("sqlbench: key not found")

func (w *sqlWorker) doRead(ctx context.Context) error {
	var row *sql.Row
	k := w.key()
	if w.read != nil {
		row = w.read.QueryRowContext(ctx, k)
	} else {
		row = w.conn.QueryRowContext(ctx, qRead, k)
	}
	var v string
	err := row.Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", errMissing, k)
	}
	return err
}

func (w *sqlWorker) doTxn(ctx context.Context) error {
	tx, err := w.conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	k := w.key()
	var v string
	if w.read != nil {
		err = tx.StmtContext(ctx, w.read).QueryRowContext(ctx, k).Scan(&v)
	} else {
		err = tx.QueryRowContext(ctx, qRead, k).Scan(&v)
	}
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("%w: %s", errMissing, k)
	}
	if err == nil {
		if w.up != nil {
			_, err = tx.StmtContext(ctx, w.up).ExecContext(ctx, w.val.next(), k)
		} else {
			_, err = tx.ExecContext(ctx, qUpdate, w.val.next(), k)
		}
	}
	if err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
