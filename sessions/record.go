package sessions

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// recordVersion is the first byte of every stored record.
const recordVersion = 1

// record is one session as stored in the bucket under the hash of its
// token. Deadlines are absolute instants, so every node enforces the same
// timeouts whatever its own configuration says.
type record struct {
	created      time.Time // when the session was first saved
	touched      time.Time // when the session was last written
	idleDeadline time.Time // touched + idle timeout, capped at absDeadline
	absDeadline  time.Time // created + absolute timeout; never moves
	csrf         string    // the session's CSRF token, "" until first asked for
	values       map[string]entry
}

func (r *record) expired(now time.Time) bool {
	return !now.Before(r.idleDeadline) || !now.Before(r.absDeadline)
}

// clone copies the record; entries' data slices are shared and never
// written to.
func (r *record) clone() *record {
	c := *r
	c.values = make(map[string]entry, len(r.values))
	for k, v := range r.values {
		c.values[k] = v
	}
	return &c
}

// Layout (integers are varints, strings and byte slices are uvarint
// length-prefixed):
//
//	version byte
//	created touched idleDeadline absDeadline   unix nanoseconds
//	csrf                                        string
//	count                                       uvarint
//	count × { key string, flags byte, kind byte, [type string], data bytes }
func (r *record) encode() []byte {
	b := make([]byte, 0, 64+r.valuesSize())
	b = append(b, recordVersion)
	for _, t := range []time.Time{r.created, r.touched, r.idleDeadline, r.absDeadline} {
		b = binary.AppendVarint(b, t.UnixNano())
	}
	b = appendString(b, r.csrf)
	b = binary.AppendUvarint(b, uint64(len(r.values)))
	for k, e := range r.values {
		b = appendString(b, k)
		flags := byte(0)
		if e.flash {
			flags = 1
		}
		b = append(b, flags, byte(e.kind))
		if e.kind == kindRegistered {
			b = appendString(b, e.typeName)
		}
		b = binary.AppendUvarint(b, uint64(len(e.data)))
		b = append(b, e.data...)
	}
	return b
}

func (r *record) valuesSize() int {
	n := 0
	for k, e := range r.values {
		n += len(k) + len(e.typeName) + len(e.data) + 16
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errBadRecord = errors.New("malformed session record")

// decodeRecord parses a stored record. It never panics on any input.
func decodeRecord(b []byte) (*record, error) {
	d := decoder{b: b}
	if v := d.byte(); v != recordVersion {
		return nil, fmt.Errorf("%w: version %d", errBadRecord, v)
	}
	r := &record{}
	for _, t := range []*time.Time{&r.created, &r.touched, &r.idleDeadline, &r.absDeadline} {
		*t = time.Unix(0, d.varint())
	}
	r.csrf = d.string()
	n := d.uvarint()
	if n > uint64(len(d.b)) { // every entry takes at least one byte
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errBadRecord, n, len(d.b))
	}
	r.values = make(map[string]entry, n)
	for range n {
		k, e := d.entry()
		if d.err != nil {
			break
		}
		if _, dup := r.values[k]; dup {
			return nil, fmt.Errorf("%w: key %q twice", errBadRecord, k)
		}
		r.values[k] = e
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errBadRecord, len(d.b))
	}
	if d.err != nil {
		return nil, d.err
	}
	return r, nil
}

// decoder reads the record layout; the first error sticks and later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or bad %s", errBadRecord, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("byte")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("length")
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) entry() (string, entry) {
	k := d.string()
	flags, kd := d.byte(), kind(d.byte())
	if flags > 1 || kd == 0 { // unknown kinds from newer code are kept as they are
		d.fail("entry header")
		return "", entry{}
	}
	e := entry{kind: kd, flash: flags == 1}
	if kd == kindRegistered {
		e.typeName = d.string()
	}
	e.data = d.bytes()
	return k, e
}
