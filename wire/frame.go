package wire

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Preambles: the first four bytes a dialer writes (after TLS, if any) to tell the node's
// single listener what speaks next.
const (
	ClientPreamble = "TNDC" // client protocol (this package)
	PeerPreamble   = "TNDP" // raft peer transport
)

// Version is the protocol version this package speaks.
const Version uint16 = 1

// DefaultMaxFrameSize bounds a frame's length field (the bytes after it) unless configured.
const DefaultMaxFrameSize = 16 << 20

// HeaderSize is the size of a frame header: length, request id and type.
const HeaderSize = 4 + 8 + 1

// Frame errors. A Reader returning any of them leaves the stream at an unknown position:
// the connection must be closed.
var (
	ErrFrameTooLarge = errors.New("wire: frame too large")
	ErrUnknownType   = errors.New("wire: unknown message type")
	ErrShortFrame    = errors.New("wire: frame shorter than its header")
)

// Frame is one protocol frame. Payload is owned by whoever received the Frame.
type Frame struct {
	ID      uint64
	Type    MsgType
	Payload []byte
}

// Reader reads frames from a buffered stream. It is not safe for concurrent use.
type Reader struct {
	br  *bufio.Reader
	max int
	hdr [HeaderSize]byte
}

// NewReader returns a Reader on r. maxFrameSize bounds the length field; <= 0 means
// DefaultMaxFrameSize. If r is already a *bufio.Reader of at least 4 KiB it is used as is.
func NewReader(r io.Reader, maxFrameSize int) *Reader {
	if maxFrameSize <= 0 {
		maxFrameSize = DefaultMaxFrameSize
	}
	return &Reader{br: bufio.NewReaderSize(r, 32<<10), max: maxFrameSize}
}

// ReadFrame reads the next frame. It returns io.EOF when the stream ends cleanly between
// frames, io.ErrUnexpectedEOF when it ends inside one, an error wrapping ErrFrameTooLarge,
// ErrShortFrame or ErrUnknownType on a malformed frame, or the underlying read error. The
// payload is freshly allocated for each frame.
func (r *Reader) ReadFrame() (Frame, error) {
	if _, err := io.ReadFull(r.br, r.hdr[:4]); err != nil {
		return Frame{}, err // io.EOF at a boundary, io.ErrUnexpectedEOF inside
	}
	n := binary.LittleEndian.Uint32(r.hdr[:4])
	if uint64(n) > uint64(r.max) {
		return Frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, r.max)
	}
	if n < HeaderSize-4 {
		return Frame{}, fmt.Errorf("%w: length %d", ErrShortFrame, n)
	}
	if _, err := io.ReadFull(r.br, r.hdr[4:]); err != nil {
		return Frame{}, noEOF(err)
	}
	f := Frame{ID: binary.LittleEndian.Uint64(r.hdr[4:12]), Type: MsgType(r.hdr[12])}
	if !f.Type.Known() {
		return Frame{}, fmt.Errorf("%w: %d (request %d)", ErrUnknownType, r.hdr[12], f.ID)
	}
	f.Payload = make([]byte, int(n)-(HeaderSize-4))
	if _, err := io.ReadFull(r.br, f.Payload); err != nil {
		return Frame{}, noEOF(err)
	}
	return f, nil
}

// Buffered reports how many bytes are buffered and not yet read.
func (r *Reader) Buffered() int { return r.br.Buffered() }

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Writer writes frames into a buffer; Flush sends them. It is not safe for concurrent use:
// one goroutine (or a caller holding a lock) uses it at a time.
type Writer struct {
	bw  *bufio.Writer
	max int
	buf []byte
}

// NewWriter returns a Writer on w. maxFrameSize bounds the frames it agrees to write
// (<= 0: DefaultMaxFrameSize); a larger one is refused with ErrFrameTooLarge and nothing is
// written, so the stream stays usable.
func NewWriter(w io.Writer, maxFrameSize int) *Writer {
	if maxFrameSize <= 0 {
		maxFrameSize = DefaultMaxFrameSize
	}
	return &Writer{bw: bufio.NewWriterSize(w, 32<<10), max: maxFrameSize}
}

// WriteFrame buffers one frame with the given payload.
func (w *Writer) WriteFrame(id uint64, t MsgType, payload []byte) error {
	n := len(payload) + HeaderSize - 4
	if n > w.max {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, w.max)
	}
	var hdr [HeaderSize]byte
	putHeader(hdr[:], uint32(n), id, t)
	if _, err := w.bw.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.bw.Write(payload)
	return err
}

// WriteMsg buffers m as one frame with request id id.
func (w *Writer) WriteMsg(id uint64, m Message) error {
	b, err := AppendFrame(w.buf[:0], id, m, w.max)
	if cap(b) <= 1<<20 {
		w.buf = b[:0]
	} else {
		w.buf = nil // do not keep a huge buffer alive
	}
	if err != nil {
		return err
	}
	_, err = w.bw.Write(b)
	return err
}

// Write buffers raw bytes, for example the preamble or frames made with AppendFrame.
func (w *Writer) Write(p []byte) (int, error) { return w.bw.Write(p) }

// Flush sends everything buffered.
func (w *Writer) Flush() error { return w.bw.Flush() }

// Buffered reports how many bytes wait for Flush.
func (w *Writer) Buffered() int { return w.bw.Buffered() }

// AppendFrame appends m framed with request id id to b. If the frame would exceed
// maxFrameSize (<= 0: DefaultMaxFrameSize) it returns b unchanged and an error wrapping
// ErrFrameTooLarge.
func AppendFrame(b []byte, id uint64, m Message, maxFrameSize int) ([]byte, error) {
	if maxFrameSize <= 0 {
		maxFrameSize = DefaultMaxFrameSize
	}
	start := len(b)
	b = append(b, make([]byte, HeaderSize)...)
	b = m.MarshalAppend(b)
	n := len(b) - start - 4
	if n > maxFrameSize {
		return b[:start], fmt.Errorf("%w: %s of %d bytes, limit %d", ErrFrameTooLarge, m.Type(), n, maxFrameSize)
	}
	putHeader(b[start:], uint32(n), id, m.Type())
	return b, nil
}

func putHeader(b []byte, n uint32, id uint64, t MsgType) {
	binary.LittleEndian.PutUint32(b[0:4], n)
	binary.LittleEndian.PutUint64(b[4:12], id)
	b[12] = byte(t)
}
