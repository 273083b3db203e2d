package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Record framing. Every record has a log sequence number (LSN), assigned in
// append order across segments:
//
//	crc32c uint32 | length uint32 | type uint8 | lsn uint64 | payload [length]byte
//
// The checksum covers type, lsn and payload. A record whose checksum does
// not match, or that is cut short, ends the log: it can only be the tail of
// a write that never reached fsync, whose batches were never acknowledged.
const (
	headerSize = 17
	// maxRecord bounds one record so a corrupt length cannot make recovery
	// allocate gigabytes.
	maxRecord = 256 << 20
)

// Record types.
const (
	recBatch    byte = 1 // an accepted batch (encodeBatch)
	recCut      byte = 2 // chunk seq, first and last batch LSN: these go into one INSERT
	recDrained  byte = 3 // chunk seq: that INSERT committed
	recAnalysed byte = 4 // LSN: analysis outputs of batches up to it are stored
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func appendRecord(dst []byte, typ byte, lsn uint64, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, headerSize)...)
	binary.LittleEndian.PutUint32(dst[start+4:], uint32(len(payload)))
	dst[start+8] = typ
	binary.LittleEndian.PutUint64(dst[start+9:], lsn)
	dst = append(dst, payload...)
	crc := crc32.Update(0, castagnoli, dst[start+8:])
	binary.LittleEndian.PutUint32(dst[start:], crc)
	return dst
}

func u64s(vs ...uint64) []byte {
	b := make([]byte, 0, 8*len(vs))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

func readU64s(p []byte, n int) ([]uint64, bool) {
	if len(p) != 8*n {
		return nil, false
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(p[8*i:])
	}
	return out, true
}

// record is one decoded record header with its position.
type record struct {
	typ     byte
	lsn     uint64
	off     int64 // of the header within the segment
	payload []byte
}

// segment is one log file, named by the LSN of its first record.
type segment struct {
	base    uint64
	path    string
	size    int64
	batches []batchPos // batch records, in LSN order
	lastLSN uint64     // of any record; base-1 when empty
}

// batchPos locates a batch record and says how many rows it has and whom
// it came from, without decoding it.
type batchPos struct {
	lsn            uint64
	off            int64
	rows           int
	size           int
	sensor, stream string
	seq            uint64
}

func segmentName(base uint64) string { return fmt.Sprintf("%020d.seg", base) }

// listSegments returns the segment files of dir in LSN order.
func listSegments(dir string) ([]*segment, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []*segment
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".seg") {
			continue
		}
		base, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("spool: unexpected file %s", name)
		}
		segs = append(segs, &segment{base: base, path: filepath.Join(dir, name)})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].base < segs[j].base })
	return segs, nil
}

// errTorn ends a scan at a record that is incomplete or fails its checksum.
var errTorn = errors.New("spool: torn record")

// scan reads every valid record of the segment and calls fn for each; it
// returns the length of the valid prefix. Only the payloads of batch
// headers are parsed (sensor, stream, seq, rows), so recovery is cheap.
func (s *segment) scan(fn func(record) error) (int64, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	hdr := make([]byte, headerSize)
	var payload []byte
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			if errors.Is(err, io.EOF) {
				return off, nil
			}
			return off, errTorn
		}
		n := binary.LittleEndian.Uint32(hdr[4:])
		if n > maxRecord {
			return off, errTorn
		}
		if cap(payload) < int(n) {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return off, errTorn
		}
		crc := crc32.Update(0, castagnoli, hdr[8:])
		crc = crc32.Update(crc, castagnoli, payload)
		if crc != binary.LittleEndian.Uint32(hdr) {
			return off, errTorn
		}
		rec := record{typ: hdr[8], lsn: binary.LittleEndian.Uint64(hdr[9:]), off: off, payload: payload}
		if err := fn(rec); err != nil {
			return off, err
		}
		off += headerSize + int64(n)
	}
}

// readAt reads the record at off. The caller owns the payload.
func readAt(f *os.File, off int64) (record, error) {
	hdr := make([]byte, headerSize)
	if _, err := f.ReadAt(hdr, off); err != nil {
		return record{}, fmt.Errorf("spool: read record header at %d: %w", off, err)
	}
	n := binary.LittleEndian.Uint32(hdr[4:])
	if n > maxRecord {
		return record{}, fmt.Errorf("%w: length %d at %d", errCorrupt, n, off)
	}
	payload := make([]byte, n)
	if _, err := f.ReadAt(payload, off+headerSize); err != nil {
		return record{}, fmt.Errorf("spool: read record at %d: %w", off, err)
	}
	crc := crc32.Update(0, castagnoli, hdr[8:])
	crc = crc32.Update(crc, castagnoli, payload)
	if crc != binary.LittleEndian.Uint32(hdr) {
		return record{}, fmt.Errorf("%w: checksum at %d", errCorrupt, off)
	}
	return record{typ: hdr[8], lsn: binary.LittleEndian.Uint64(hdr[9:]), off: off, payload: payload}, nil
}

// batchHeader reads the identity and size of a batch payload.
func batchHeader(p []byte) (sensor, stream string, seq uint64, rows int, err error) {
	d := &decoder{b: p}
	sensor, stream = d.string(nil), d.string(nil)
	seq = d.uvarint()
	n := d.uvarint()
	if d.err != nil || n > uint64(len(p)) {
		return "", "", 0, 0, errCorrupt
	}
	return sensor, stream, seq, int(n), nil
}

// syncDir makes a directory's entries (a new or removed segment) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
