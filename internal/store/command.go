package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tandemdb/tandem/internal/consensus"
	"github.com/tandemdb/tandem/internal/sqlite"
)

// Entry is a committed Raft log entry.
type Entry = consensus.Entry

var (
	_ consensus.StateMachine   = (*Store)(nil)
	_ consensus.AppliedIndexer = (*Store)(nil)
)

// CommandKind is the first byte of every entry this store writes, so that a multiplexer in
// front of several state machines can route entries by it.
const CommandKind byte = 0x01

// commandVersion 2 added WallTime; version 1 entries (in older logs) decode with WallTime 0.
// Version 3 adds UserVersion; it is written only by entries that change user_version, so
// that a node of an older version rejects (and reports) those entries alone.
// Version 4 adds RowIDs and a flags byte that says which of UserVersion and RowIDs follow;
// it is written only by entries that carry rowids.
const (
	commandVersion            byte = 2
	commandVersionUserVersion byte = 3
	commandVersionFlags       byte = 4
)

// Flags of a version 4 entry.
const (
	flagUserVersion byte = 1 << iota
	flagRowIDs
)

// command is the payload of one Raft entry: the effects of one batch (or one interactive
// transaction) on one database.
type command struct {
	DB         string
	Node       uint64 // proposing node: with (ExecTerm, Seq) identifies the local waiter
	ExecTerm   uint64 // term in which the batch was executed; must equal the entry's term
	Seq        uint64 // per-store proposal counter
	BaseIndex  uint64 // the database's own applied index the batch was executed on
	LeaderTime int64  // leader's monotonic ns since it started (reserved for leases)
	WallTime   int64  // leader's wall clock, Unix ms: how old request records are (retention)
	DDL        []string
	SeqChanges []seqChange
	Changeset  []byte
	Requests   []requestRecord
	// UserVersion is PRAGMA user_version after the batch, when it changed (HasUserVersion).
	UserVersion    int64
	HasUserVersion bool
	// RowIDs are the leader's rowids of the rows the changeset inserts or updates in tables
	// whose rowid is not their key (sqlite.TableRowIDs), which the changeset cannot carry.
	RowIDs []sqlite.TableRowIDs
}

// empty reports whether c changes nothing (then there is nothing to replicate).
func (c *command) empty() bool {
	return len(c.Changeset) == 0 && len(c.DDL) == 0 && len(c.SeqChanges) == 0 && !c.HasUserVersion
}

// size is about the length of c's encoding (an upper bound but for a few bytes per field),
// computed without encoding it: the writer checks it against Options.MaxEntryBytes before
// the request records, which are small, are added.
func (c *command) size() int {
	n := 64 + len(c.DB) + len(c.Changeset)
	for _, d := range c.DDL {
		n += len(d) + binary.MaxVarintLen64
	}
	for _, s := range c.SeqChanges {
		n += len(s.Table) + 2*binary.MaxVarintLen64
	}
	for _, r := range c.Requests {
		n += len(r.Result) + 3*binary.MaxVarintLen64
	}
	for _, t := range c.RowIDs {
		n += len(t.Table) + (len(t.RowIDs)+2)*binary.MaxVarintLen64
	}
	return n
}

// seqChange is a changed row of sqlite_sequence (Delete: the row went away).
type seqChange struct {
	Table  string
	Value  int64
	Delete bool
}

// requestRecord remembers the outcome of a request with a RequestID.
type requestRecord struct {
	ClientID, RequestID uint64
	Result              []byte // encodeResult
}

var errCorrupt = errors.New("store: corrupt command")

// encodeCommand appends the binary form of c to dst.
func encodeCommand(dst []byte, c *command) []byte {
	v := commandVersion
	switch {
	case len(c.RowIDs) > 0:
		v = commandVersionFlags
	case c.HasUserVersion:
		v = commandVersionUserVersion
	}
	dst = append(dst, CommandKind, v)
	dst = binary.AppendUvarint(dst, c.Node)
	dst = binary.AppendUvarint(dst, c.ExecTerm)
	dst = binary.AppendUvarint(dst, c.Seq)
	dst = binary.AppendUvarint(dst, c.BaseIndex)
	dst = binary.AppendVarint(dst, c.LeaderTime)
	dst = binary.AppendVarint(dst, c.WallTime)
	dst = appendString(dst, c.DB)
	dst = binary.AppendUvarint(dst, uint64(len(c.DDL)))
	for _, d := range c.DDL {
		dst = appendString(dst, d)
	}
	dst = binary.AppendUvarint(dst, uint64(len(c.SeqChanges)))
	for _, s := range c.SeqChanges {
		dst = appendString(dst, s.Table)
		dst = binary.AppendVarint(dst, s.Value)
		if s.Delete {
			dst = append(dst, 1)
		} else {
			dst = append(dst, 0)
		}
	}
	dst = appendBytes(dst, c.Changeset)
	dst = binary.AppendUvarint(dst, uint64(len(c.Requests)))
	for _, r := range c.Requests {
		dst = binary.AppendUvarint(dst, r.ClientID)
		dst = binary.AppendUvarint(dst, r.RequestID)
		dst = appendBytes(dst, r.Result)
	}
	if v == commandVersionFlags {
		flags := flagRowIDs
		if c.HasUserVersion {
			flags |= flagUserVersion
		}
		dst = append(dst, flags)
	}
	if c.HasUserVersion {
		dst = binary.AppendVarint(dst, c.UserVersion)
	}
	if v == commandVersionFlags {
		dst = binary.AppendUvarint(dst, uint64(len(c.RowIDs)))
		for _, t := range c.RowIDs {
			dst = appendString(dst, t.Table)
			dst = binary.AppendUvarint(dst, uint64(len(t.RowIDs)))
			for _, id := range t.RowIDs {
				dst = binary.AppendVarint(dst, id)
			}
		}
	}
	return dst
}

// decodeCommand parses b; it never panics and rejects trailing bytes.
func decodeCommand(b []byte) (*command, error) {
	d := decoder{b: b}
	if k := d.byte(); k != CommandKind {
		return nil, fmt.Errorf("%w: kind %#x", errCorrupt, k)
	}
	v := d.byte()
	if v < 1 || v > commandVersionFlags {
		return nil, fmt.Errorf("%w: unsupported version %d", errCorrupt, v)
	}
	c := &command{}
	c.Node = d.uvarint()
	c.ExecTerm = d.uvarint()
	c.Seq = d.uvarint()
	c.BaseIndex = d.uvarint()
	c.LeaderTime = d.varint()
	if v >= 2 {
		c.WallTime = d.varint()
	}
	c.DB = d.string()
	if n := d.count(1); n > 0 {
		c.DDL = make([]string, n)
		for i := range c.DDL {
			c.DDL[i] = d.string()
		}
	}
	if n := d.count(3); n > 0 {
		c.SeqChanges = make([]seqChange, n)
		for i := range c.SeqChanges {
			s := &c.SeqChanges[i]
			s.Table = d.string()
			s.Value = d.varint()
			switch d.byte() {
			case 0:
			case 1:
				s.Delete = true
			default:
				d.fail()
			}
		}
	}
	c.Changeset = d.bytes()
	if n := d.count(3); n > 0 {
		c.Requests = make([]requestRecord, n)
		for i := range c.Requests {
			r := &c.Requests[i]
			r.ClientID = d.uvarint()
			r.RequestID = d.uvarint()
			r.Result = d.bytes()
		}
	}
	var flags byte
	switch {
	case v >= commandVersionFlags:
		if flags = d.byte(); flags&^(flagUserVersion|flagRowIDs) != 0 {
			d.fail()
		}
	case v == commandVersionUserVersion:
		flags = flagUserVersion
	}
	if flags&flagUserVersion != 0 {
		c.UserVersion, c.HasUserVersion = d.varint(), true
	}
	if flags&flagRowIDs != 0 {
		if n := d.count(2); n > 0 {
			c.RowIDs = make([]sqlite.TableRowIDs, n)
			for i := range c.RowIDs {
				t := &c.RowIDs[i]
				t.Table = d.string()
				if m := d.count(1); m > 0 {
					t.RowIDs = make([]int64, m)
					for j := range t.RowIDs {
						t.RowIDs[j] = d.varint()
					}
				}
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return nil, d.err
	}
	return c, nil
}

// Value tags of the result encoding.
const (
	tagNull byte = iota
	tagInt
	tagFloat
	tagText
	tagBlob
)

// encodeResult appends the binary form of r (without Index) to dst.
func encodeResult(dst []byte, r *Result) []byte {
	dst = append(dst, 1) // version
	dst = binary.AppendUvarint(dst, uint64(len(r.Columns)))
	for _, c := range r.Columns {
		dst = appendString(dst, c)
	}
	for i := range r.Columns { // declared types, one per column ("" when unknown)
		var t string
		if i < len(r.DeclTypes) {
			t = r.DeclTypes[i]
		}
		dst = appendString(dst, t)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Rows)))
	for _, row := range r.Rows {
		dst = binary.AppendUvarint(dst, uint64(len(row)))
		for _, v := range row {
			dst = appendValue(dst, v)
		}
	}
	dst = binary.AppendVarint(dst, r.LastInsertID)
	dst = binary.AppendVarint(dst, r.RowsAffected)
	if r.Err == nil {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendVarint(dst, int64(r.Err.Code))
	dst = binary.AppendVarint(dst, int64(r.Err.ExtendedCode))
	return appendString(dst, r.Err.Msg)
}

func decodeResult(b []byte) (Result, error) {
	d := decoder{b: b}
	var r Result
	if v := d.byte(); v != 1 {
		return r, fmt.Errorf("%w: result version %d", errCorrupt, v)
	}
	if n := d.count(1); n > 0 {
		r.Columns = make([]string, n)
		for i := range r.Columns {
			r.Columns[i] = d.string()
		}
		r.DeclTypes = make([]string, n)
		for i := range r.DeclTypes {
			r.DeclTypes[i] = d.string()
		}
	}
	if n := d.count(1); n > 0 {
		r.Rows = make([][]sqlite.Value, n)
		for i := range r.Rows {
			m := d.count(1)
			row := make([]sqlite.Value, m)
			for j := range row {
				row[j] = d.value()
			}
			r.Rows[i] = row
		}
	}
	r.LastInsertID = d.varint()
	r.RowsAffected = d.varint()
	switch d.byte() {
	case 0:
	case 1:
		code, ext := d.varint(), d.varint()
		msg := d.string()
		if code < math.MinInt32 || code > math.MaxInt32 || ext < math.MinInt32 || ext > math.MaxInt32 {
			d.fail()
		}
		r.Err = &sqlite.Error{Code: int(code), ExtendedCode: int(ext), Msg: msg}
	default:
		d.fail()
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	if d.err != nil {
		return Result{}, d.err
	}
	return r, nil
}

func appendValue(dst []byte, v sqlite.Value) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, tagNull)
	case int64:
		return binary.AppendVarint(append(dst, tagInt), x)
	case float64:
		return binary.LittleEndian.AppendUint64(append(dst, tagFloat), math.Float64bits(x))
	case string:
		return appendString(append(dst, tagText), x)
	case []byte:
		return appendBytes(append(dst, tagBlob), x)
	default:
		// The binding only produces the five types above; anything else is a programming
		// error, kept visible rather than silently dropped.
		return appendString(append(dst, tagText), fmt.Sprint(x))
	}
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBytes(dst []byte, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// decoder reads the encodings above; after the first error every read returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count; each element takes at least min bytes, so a count larger
// than the remaining input allows is corrupt (this bounds allocations on hostile input).
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) raw() []byte {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) string() string { return string(d.raw()) }

func (d *decoder) bytes() []byte {
	b := d.raw()
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

func (d *decoder) value() sqlite.Value {
	switch d.byte() {
	case tagNull:
		return nil
	case tagInt:
		return d.varint()
	case tagFloat:
		if len(d.b) < 8 {
			d.fail()
			return nil
		}
		v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
		d.b = d.b[8:]
		return v
	case tagText:
		return d.string()
	case tagBlob:
		b := d.raw()
		return append([]byte{}, b...)
	default:
		d.fail()
		return nil
	}
}
