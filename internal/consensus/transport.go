package consensus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Transport moves Raft messages between nodes.
//
// Messages are *raftpb.Message: raft v3.7's protobuf-go messages must not be copied by value
// (the contract's raftpb.Message values would trip go vet's copylocks check).
type Transport interface {
	// Start is called once by the Node: deliver hands every received message to raft; snaps
	// is where snapshot files are read and written and where delivery problems are reported.
	Start(self uint64, deliver func(*raftpb.Message) error, snaps SnapshotStore) error
	// Send never blocks the raft loop; it drops (and reports unreachable) when a peer's queue
	// is full. The transport owns msgs after the call.
	Send(msgs []*raftpb.Message)
	SetPeer(id uint64, addr string) // add or update
	RemovePeer(id uint64)
	Stop()
}

// SnapshotStore is the node's side of a Transport: the files behind a snapshot message and
// the reports raft needs from the transport. The Node implements it.
type SnapshotStore interface {
	// OpenSnapshot pins the local snapshot at index and returns its directory and the names
	// of its files. release unpins it (the directory is not deleted while pinned).
	OpenSnapshot(index uint64) (dir string, files []string, release func(), err error)
	// ReceiveDir returns a fresh empty directory (Dir/snap/recv-<index>) for incoming files.
	ReceiveDir(index uint64) (string, error)
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

const (
	// Preamble is written by the dialer before anything else on a peer connection.
	Preamble = "TNDP"

	streamMessages byte = 'M'
	streamSnapshot byte = 'S'

	maxMessageSize = 256 << 20
	maxFileName    = 1024
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func writeFrame(w io.Writer, b []byte) error {
	var hdr [4]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(b)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

func readFrame(r io.Reader, limit int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.LittleEndian.Uint32(hdr[:]))
	if n > limit {
		return nil, fmt.Errorf("consensus: frame of %d bytes exceeds limit %d", n, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	return b, nil
}

func readMessage(r io.Reader) (*raftpb.Message, error) {
	b, err := readFrame(r, maxMessageSize)
	if err != nil {
		return nil, err
	}
	m := &raftpb.Message{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("consensus: bad raft message: %w", err)
	}
	return m, nil
}

// validFileName accepts plain names only: snapshot directories are flat.
func validFileName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= maxFileName &&
		!strings.ContainsAny(name, `/\`) && name == filepath.Base(name)
}

// Snapshot file stream, after the MsgSnap frame:
//
//	u32 file count, then per file: u16 name length | name | u64 size | bytes | u32 crc32c
//
// and the receiver answers one byte: 0 = stored and delivered, 1 = failed.
func writeSnapshotFiles(w io.Writer, dir string, files []string) error {
	var b [8]byte
	binary.LittleEndian.PutUint32(b[:4], uint32(len(files)))
	if _, err := w.Write(b[:4]); err != nil {
		return err
	}
	for _, name := range files {
		if err := writeSnapshotFile(w, dir, name); err != nil {
			return err
		}
	}
	return nil
}

func writeSnapshotFile(w io.Writer, dir, name string) error {
	f, err := os.Open(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var b [8]byte
	binary.LittleEndian.PutUint16(b[:2], uint16(len(name)))
	if _, err := w.Write(b[:2]); err != nil {
		return err
	}
	if _, err := io.WriteString(w, name); err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(b[:], uint64(st.Size()))
	if _, err := w.Write(b[:]); err != nil {
		return err
	}
	h := crc32.New(castagnoli)
	if _, err := io.CopyN(io.MultiWriter(w, h), f, st.Size()); err != nil {
		return fmt.Errorf("consensus: stream %s: %w", name, err)
	}
	binary.LittleEndian.PutUint32(b[:4], h.Sum32())
	_, err = w.Write(b[:4])
	return err
}

// readSnapshotFiles stores the streamed files in dir, fsyncing each file and then dir.
func readSnapshotFiles(r io.Reader, dir string) error {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:4]); err != nil {
		return err
	}
	count := binary.LittleEndian.Uint32(b[:4])
	if count > 1<<16 {
		return fmt.Errorf("consensus: snapshot with %d files", count)
	}
	for range count {
		if _, err := io.ReadFull(r, b[:2]); err != nil {
			return err
		}
		nb := make([]byte, binary.LittleEndian.Uint16(b[:2]))
		if _, err := io.ReadFull(r, nb); err != nil {
			return err
		}
		name := string(nb)
		if !validFileName(name) {
			return fmt.Errorf("consensus: bad snapshot file name %q", name)
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return err
		}
		size := int64(binary.LittleEndian.Uint64(b[:]))
		if err := readSnapshotFile(r, filepath.Join(dir, name), size); err != nil {
			return err
		}
	}
	return syncDir(dir)
}

func readSnapshotFile(r io.Reader, path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	if _, err := io.CopyN(io.MultiWriter(f, h), r, size); err != nil {
		return fmt.Errorf("consensus: receive %s: %w", filepath.Base(path), err)
	}
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(b[:]) != h.Sum32() {
		return fmt.Errorf("consensus: receive %s: crc mismatch", filepath.Base(path))
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

var errSnapshotRejected = errors.New("consensus: peer failed to store the snapshot")
