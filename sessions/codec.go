package sessions

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sync"
	"time"
)

// kind tags how a stored value is encoded. The numbers are part of the
// stored format: never renumber, only append.
type kind byte

const (
	kindString kind = iota + 1
	kindBool
	kindInt
	kindInt8
	kindInt16
	kindInt32
	kindInt64
	kindUint
	kindUint8
	kindUint16
	kindUint32
	kindUint64
	kindUintptr
	kindFloat32
	kindFloat64
	kindComplex64
	kindComplex128
	kindBytes
	kindTime
	kindDuration
	kindRegistered
)

// entry is one stored value in its encoded form. Values stay encoded until
// read, so a value of a type this process does not know (registered by a
// newer deploy) is carried through saves untouched.
type entry struct {
	kind     kind
	typeName string // for kindRegistered
	data     []byte
	flash    bool // set by Flash: lives until the end of the next request
}

func (e entry) equal(o entry) bool {
	return e.kind == o.kind && e.typeName == o.typeName && e.flash == o.flash && bytes.Equal(e.data, o.data)
}

// registry maps registered Go types to stored type names, per Manager.
type registry struct {
	mu     sync.RWMutex
	byType map[reflect.Type]string
	byName map[string]reflect.Type
}

func newRegistry() *registry {
	return &registry{byType: map[reflect.Type]string{}, byName: map[string]reflect.Type{}}
}

func (r *registry) register(t reflect.Type, name string) error {
	if name == "" || len(name) > 255 {
		return fmt.Errorf("%w: type name %q must be 1 to 255 bytes", ErrUnsupportedType, name)
	}
	if _, err := encodeBuiltin(reflect.Zero(t).Interface()); err == nil {
		return fmt.Errorf("%w: %s is stored natively; do not register it", ErrUnsupportedType, t)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if have, ok := r.byName[name]; ok && have != t {
		return fmt.Errorf("%w: name %q is already registered for %s", ErrUnsupportedType, name, have)
	}
	if have, ok := r.byType[t]; ok && have != name {
		return fmt.Errorf("%w: %s is already registered as %q", ErrUnsupportedType, t, have)
	}
	r.byType[t], r.byName[name] = name, t
	return nil
}

func (r *registry) encode(v any) (entry, error) {
	if e, err := encodeBuiltin(v); !errors.Is(err, errNotBuiltin) {
		return e, err
	}
	if v == nil {
		return entry{}, fmt.Errorf("%w: nil (use Remove to delete a key)", ErrUnsupportedType)
	}
	t := reflect.TypeOf(v)
	r.mu.RLock()
	name, ok := r.byType[t]
	r.mu.RUnlock()
	if !ok {
		return entry{}, fmt.Errorf("%w: %s is not registered (call sessions.Register[%s] first)", ErrUnsupportedType, t, t)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return entry{}, fmt.Errorf("%w: encode %s: %w", ErrUnsupportedType, t, err)
	}
	return entry{kind: kindRegistered, typeName: name, data: data}, nil
}

func (r *registry) decode(e entry) (any, error) {
	if e.kind != kindRegistered {
		return decodeBuiltin(e)
	}
	r.mu.RLock()
	t, ok := r.byName[e.typeName]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w: stored type %q is not registered in this process", ErrUnsupportedType, e.typeName)
	}
	p := reflect.New(t)
	if err := json.Unmarshal(e.data, p.Interface()); err != nil {
		return nil, fmt.Errorf("decode stored %q: %w", e.typeName, err)
	}
	return p.Elem().Interface(), nil
}

var errNotBuiltin = errors.New("not a built-in kind")

// encodeBuiltin encodes the types stored natively. Named types (type Role
// string) are not built-in: they keep their identity only when registered.
func encodeBuiltin(v any) (entry, error) {
	switch x := v.(type) {
	case string:
		return entry{kind: kindString, data: []byte(x)}, nil
	case bool:
		b := byte(0)
		if x {
			b = 1
		}
		return entry{kind: kindBool, data: []byte{b}}, nil
	case int:
		return varintEntry(kindInt, int64(x)), nil
	case int8:
		return varintEntry(kindInt8, int64(x)), nil
	case int16:
		return varintEntry(kindInt16, int64(x)), nil
	case int32:
		return varintEntry(kindInt32, int64(x)), nil
	case int64:
		return varintEntry(kindInt64, x), nil
	case time.Duration:
		return varintEntry(kindDuration, int64(x)), nil
	case uint:
		return uvarintEntry(kindUint, uint64(x)), nil
	case uint8:
		return uvarintEntry(kindUint8, uint64(x)), nil
	case uint16:
		return uvarintEntry(kindUint16, uint64(x)), nil
	case uint32:
		return uvarintEntry(kindUint32, uint64(x)), nil
	case uint64:
		return uvarintEntry(kindUint64, x), nil
	case uintptr:
		return uvarintEntry(kindUintptr, uint64(x)), nil
	}
	return encodeBuiltinOther(v)
}

func encodeBuiltinOther(v any) (entry, error) {
	switch x := v.(type) {
	case float32:
		return entry{kind: kindFloat32, data: binary.LittleEndian.AppendUint32(nil, math.Float32bits(x))}, nil
	case float64:
		return entry{kind: kindFloat64, data: binary.LittleEndian.AppendUint64(nil, math.Float64bits(x))}, nil
	case complex64:
		d := binary.LittleEndian.AppendUint32(nil, math.Float32bits(real(x)))
		return entry{kind: kindComplex64, data: binary.LittleEndian.AppendUint32(d, math.Float32bits(imag(x)))}, nil
	case complex128:
		d := binary.LittleEndian.AppendUint64(nil, math.Float64bits(real(x)))
		return entry{kind: kindComplex128, data: binary.LittleEndian.AppendUint64(d, math.Float64bits(imag(x)))}, nil
	case []byte:
		if x == nil {
			return entry{kind: kindBytes, data: []byte{0}}, nil
		}
		return entry{kind: kindBytes, data: append([]byte{1}, x...)}, nil
	case time.Time:
		return entry{kind: kindTime, data: encodeTime(x)}, nil
	}
	return entry{}, errNotBuiltin
}

func varintEntry(k kind, v int64) entry { return entry{kind: k, data: binary.AppendVarint(nil, v)} }

func uvarintEntry(k kind, v uint64) entry { return entry{kind: k, data: binary.AppendUvarint(nil, v)} }

var errBadValue = errors.New("malformed stored value")

func decodeBuiltin(e entry) (any, error) {
	switch e.kind {
	case kindString:
		return string(e.data), nil
	case kindBool:
		if len(e.data) != 1 || e.data[0] > 1 {
			return nil, errBadValue
		}
		return e.data[0] == 1, nil
	case kindInt, kindInt8, kindInt16, kindInt32, kindInt64, kindDuration:
		return decodeSigned(e)
	case kindUint, kindUint8, kindUint16, kindUint32, kindUint64, kindUintptr:
		return decodeUnsigned(e)
	case kindFloat32, kindFloat64, kindComplex64, kindComplex128:
		return decodeFloat(e)
	case kindBytes:
		return decodeBytes(e.data)
	case kindTime:
		return decodeTime(e.data)
	}
	return nil, fmt.Errorf("%w: unknown kind %d", errBadValue, e.kind)
}

func decodeSigned(e entry) (any, error) {
	v, n := binary.Varint(e.data)
	if n <= 0 || n != len(e.data) {
		return nil, errBadValue
	}
	var out any
	switch e.kind {
	case kindInt:
		out = int(v)
	case kindInt8:
		out = int8(v)
	case kindInt16:
		out = int16(v)
	case kindInt32:
		out = int32(v)
	case kindDuration:
		return time.Duration(v), nil
	default:
		return v, nil
	}
	if reflect.ValueOf(out).Int() != v {
		return nil, fmt.Errorf("%w: %d out of range", errBadValue, v)
	}
	return out, nil
}

func decodeUnsigned(e entry) (any, error) {
	v, n := binary.Uvarint(e.data)
	if n <= 0 || n != len(e.data) {
		return nil, errBadValue
	}
	var out any
	switch e.kind {
	case kindUint:
		out = uint(v)
	case kindUint8:
		out = uint8(v)
	case kindUint16:
		out = uint16(v)
	case kindUint32:
		out = uint32(v)
	case kindUintptr:
		out = uintptr(v)
	default:
		return v, nil
	}
	if reflect.ValueOf(out).Uint() != v {
		return nil, fmt.Errorf("%w: %d out of range", errBadValue, v)
	}
	return out, nil
}

func decodeFloat(e entry) (any, error) {
	d := e.data
	le := binary.LittleEndian
	switch {
	case e.kind == kindFloat32 && len(d) == 4:
		return math.Float32frombits(le.Uint32(d)), nil
	case e.kind == kindFloat64 && len(d) == 8:
		return math.Float64frombits(le.Uint64(d)), nil
	case e.kind == kindComplex64 && len(d) == 8:
		return complex(math.Float32frombits(le.Uint32(d)), math.Float32frombits(le.Uint32(d[4:]))), nil
	case e.kind == kindComplex128 && len(d) == 16:
		return complex(math.Float64frombits(le.Uint64(d)), math.Float64frombits(le.Uint64(d[8:]))), nil
	}
	return nil, errBadValue
}

func decodeBytes(d []byte) (any, error) {
	switch {
	case len(d) == 1 && d[0] == 0:
		return []byte(nil), nil
	case len(d) >= 1 && d[0] == 1:
		return append([]byte{}, d[1:]...), nil
	}
	return nil, errBadValue
}

// encodeTime keeps the instant, the zone offset (to the second) and the
// zone abbreviation: varint Unix seconds, uvarint nanoseconds, a byte that
// is 1 for UTC, then for other zones varint offset seconds and the
// abbreviation. (time.Time.MarshalBinary rejects or alters sub-minute
// offsets, which historical zones have.)
func encodeTime(t time.Time) []byte {
	b := binary.AppendVarint(nil, t.Unix())
	b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	if t.Location() == time.UTC {
		return append(b, 1)
	}
	name, offset := t.Zone()
	b = append(b, 0)
	b = binary.AppendVarint(b, int64(offset))
	return append(b, name...)
}

func decodeTime(b []byte) (any, error) {
	d := decoder{b: b}
	sec, nsec, utc := d.varint(), d.uvarint(), d.byte()
	if d.err != nil || nsec >= 1e9 || utc > 1 {
		return nil, errBadValue
	}
	t := time.Unix(sec, int64(nsec))
	if utc == 1 {
		if len(d.b) != 0 {
			return nil, errBadValue
		}
		return t.UTC(), nil
	}
	offset := d.varint()
	if d.err != nil || offset <= -1<<31 || offset >= 1<<31 {
		return nil, errBadValue
	}
	return t.In(time.FixedZone(string(d.b), int(offset))), nil
}
