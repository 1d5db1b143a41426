package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrMalformed is wrapped by every Unmarshal error.
var ErrMalformed = errors.New("wire: malformed payload")

// Value tags.
const (
	tagNull  = 0
	tagInt   = 1
	tagFloat = 2
	tagText  = 3
	tagBlob  = 4
	tagNamed = 5
)

// Value is a statement argument or a row cell. Decoded values are exactly nil, int64,
// float64, string or []byte (and Named, in arguments only). When encoding, MarshalAppend
// also accepts the other Go integer types (uint64 only up to math.MaxInt64), float32, bool
// (as 0 or 1) and time.Time (as RFC 3339 text with nanoseconds, UTC); use CheckValue first
// for values of unknown origin, as MarshalAppend panics on any other type.
type Value = any

// Named is a named statement argument (:name, @name or $name in the SQL; Name carries no
// prefix).
type Named struct {
	Name  string
	Value Value
}

// CheckValue reports whether v can be encoded.
func CheckValue(v Value) error {
	switch x := v.(type) {
	case nil, int64, int, int32, int16, int8, uint32, uint16, uint8, float64, float32, bool, string, []byte, time.Time:
		return nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return fmt.Errorf("wire: uint %d overflows int64", x)
		}
		return nil
	case uint64:
		if x > math.MaxInt64 {
			return fmt.Errorf("wire: uint64 %d overflows int64", x)
		}
		return nil
	case Named:
		if _, nested := x.Value.(Named); nested {
			return errors.New("wire: nested Named value")
		}
		return CheckValue(x.Value)
	default:
		return fmt.Errorf("wire: unsupported value type %T", v)
	}
}

// TimeFormat is how time.Time values travel and are stored: RFC 3339 in UTC with all nine
// digits of the fraction, so that text order is time order (RFC3339Nano drops trailing
// zeros: "...:00Z" sorted after "...:00.5Z"). SQLite's date functions read it.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// ---- encoding ----

func appendU8(b []byte, v uint8) []byte   { return append(b, v) }
func appendU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
func appendI32(b []byte, v int32) []byte  { return appendU32(b, uint32(v)) }
func appendI64(b []byte, v int64) []byte  { return appendU64(b, uint64(v)) }

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

func appendInt(b []byte, v int64) []byte {
	b = append(b, tagInt)
	return binary.AppendVarint(b, v) // zigzag
}

// appendValue encodes one value; see Value for the accepted types.
func appendValue(b []byte, v Value) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, tagNull)
	case int64:
		return appendInt(b, x)
	case int:
		return appendInt(b, int64(x))
	case int32:
		return appendInt(b, int64(x))
	case int16:
		return appendInt(b, int64(x))
	case int8:
		return appendInt(b, int64(x))
	case uint32:
		return appendInt(b, int64(x))
	case uint16:
		return appendInt(b, int64(x))
	case uint8:
		return appendInt(b, int64(x))
	case uint:
		if uint64(x) > math.MaxInt64 {
			panic(fmt.Sprintf("wire: uint %d overflows int64", x))
		}
		return appendInt(b, int64(x))
	case uint64:
		if x > math.MaxInt64 {
			panic(fmt.Sprintf("wire: uint64 %d overflows int64", x))
		}
		return appendInt(b, int64(x))
	case bool:
		if x {
			return appendInt(b, 1)
		}
		return appendInt(b, 0)
	case float64:
		b = append(b, tagFloat)
		return appendU64(b, math.Float64bits(x))
	case float32:
		b = append(b, tagFloat)
		return appendU64(b, math.Float64bits(float64(x)))
	case string:
		b = append(b, tagText)
		return appendString(b, x)
	case []byte:
		b = append(b, tagBlob)
		return appendBytes(b, x)
	case time.Time:
		b = append(b, tagText)
		var tmp [64]byte
		return appendBytes(b, x.UTC().AppendFormat(tmp[:0], TimeFormat))
	case Named:
		if _, nested := x.Value.(Named); nested {
			panic("wire: nested Named value")
		}
		b = append(b, tagNamed)
		b = appendString(b, x.Name)
		return appendValue(b, x.Value)
	default:
		panic(fmt.Sprintf("wire: unsupported value type %T", v))
	}
}

func appendValues(b []byte, vs []Value) []byte {
	b = binary.AppendUvarint(b, uint64(len(vs)))
	for _, v := range vs {
		b = appendValue(b, v)
	}
	return b
}

func appendRows(b []byte, rows [][]Value) []byte {
	b = binary.AppendUvarint(b, uint64(len(rows)))
	for _, r := range rows {
		b = appendValues(b, r)
	}
	return b
}

// ---- decoding ----

// decoder reads a payload. The first failure sticks: later reads return zero values, and
// err reports the first failure.
type decoder struct {
	p   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformed, what)
	}
	d.p = nil
}

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.p) {
		d.fail("truncated " + what)
		return nil
	}
	s := d.p[:n:n]
	d.p = d.p[n:]
	return s
}

func (d *decoder) u8(what string) uint8 {
	s := d.take(1, what)
	if s == nil {
		return 0
	}
	return s[0]
}

func (d *decoder) u16(what string) uint16 {
	s := d.take(2, what)
	if s == nil {
		return 0
	}
	return binary.LittleEndian.Uint16(s)
}

func (d *decoder) u32(what string) uint32 {
	s := d.take(4, what)
	if s == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(s)
}

func (d *decoder) u64(what string) uint64 {
	s := d.take(8, what)
	if s == nil {
		return 0
	}
	return binary.LittleEndian.Uint64(s)
}

func (d *decoder) i32(what string) int32 { return int32(d.u32(what)) }
func (d *decoder) i64(what string) int64 { return int64(d.u64(what)) }

func (d *decoder) boolean(what string) bool {
	switch d.u8(what) {
	case 0:
		return false
	case 1:
		return true
	default:
		d.fail("bad boolean " + what)
		return false
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.p)
	if n <= 0 {
		d.fail("bad varint " + what)
		return 0
	}
	d.p = d.p[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.p)
	if n <= 0 {
		d.fail("bad varint " + what)
		return 0
	}
	d.p = d.p[n:]
	return v
}

// count reads an element count; each element takes at least minSize bytes, so a count
// larger than the rest of the payload allows is rejected before anything is allocated.
func (d *decoder) count(what string, minSize int) int {
	n := d.uvarint(what)
	if d.err != nil {
		return 0
	}
	if n > uint64(len(d.p)/minSize) {
		d.fail("count too large for " + what)
		return 0
	}
	return int(n)
}

func (d *decoder) bytesLen(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.p)) {
		d.fail("truncated " + what)
		return nil
	}
	return d.take(int(n), what)
}

func (d *decoder) str(what string) string { return string(d.bytesLen(what)) }

func (d *decoder) strings(what string) []string {
	n := d.count(what, 1)
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = d.str(what)
	}
	if d.err != nil {
		return nil
	}
	return ss
}

func (d *decoder) value(named bool) Value {
	switch d.u8("value tag") {
	case tagNull:
		return nil
	case tagInt:
		return d.varint("int value")
	case tagFloat:
		return math.Float64frombits(d.u64("float value"))
	case tagText:
		return d.str("text value")
	case tagBlob:
		s := d.bytesLen("blob value")
		if s == nil {
			return []byte{}
		}
		return append([]byte{}, s...)
	case tagNamed:
		if !named {
			d.fail("named value not allowed here")
			return nil
		}
		name := d.str("value name")
		return Named{Name: name, Value: d.value(false)}
	default:
		d.fail("bad value tag")
		return nil
	}
}

func (d *decoder) values(what string, named bool) []Value {
	n := d.count(what, 1)
	if n == 0 {
		return nil
	}
	vs := make([]Value, n)
	for i := range vs {
		vs[i] = d.value(named)
		if d.err != nil {
			return nil
		}
	}
	return vs
}

func (d *decoder) rows() [][]Value {
	n := d.count("rows", 1)
	if n == 0 {
		return nil
	}
	rows := make([][]Value, n)
	// Rows share slabs of values: one allocation for a page of equally wide rows. A slab
	// never exceeds the bytes left (each value takes at least one).
	var slab []Value
	for i := range rows {
		k := d.count("row", 1)
		if d.err != nil {
			return nil
		}
		if k == 0 {
			continue
		}
		if k > len(slab) {
			slab = make([]Value, min(k*(n-i), len(d.p)))
		}
		row := slab[:k:k]
		slab = slab[k:]
		for j := range row {
			row[j] = d.value(false)
		}
		if d.err != nil {
			return nil
		}
		rows[i] = row
	}
	return rows
}

// done reports the first failure, or trailing bytes.
func (d *decoder) done(t MsgType) error {
	if d.err == nil && len(d.p) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(d.p))
	}
	if d.err != nil {
		return fmt.Errorf("%s: %w", t, d.err)
	}
	return nil
}
