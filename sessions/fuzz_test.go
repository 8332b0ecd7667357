package sessions

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"reflect"
	"testing"
	"time"
)

func FuzzDecodeCookie(f *testing.F) {
	f.Add(newToken())
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB") // non-canonical last character
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
	f.Fuzz(func(t *testing.T, v string) {
		token, ok := parseToken(v)
		if !ok {
			return
		}
		b, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil || len(b) != tokenBytes || base64.RawURLEncoding.EncodeToString(b) != v {
			t.Fatalf("accepted %q: not 32 canonically encoded bytes", v)
		}
		key := storageKey(token)
		if _, err := hex.DecodeString(key); err != nil || len(key) != 64 || key == token {
			t.Fatalf("storage key %q for %q is not a hex SHA-256", key, v)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range seedRecords() {
		f.Add(r.encode())
	}
	f.Add([]byte{})
	f.Add([]byte{recordVersion, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		again, err := decodeRecord(rec.encode())
		if err != nil {
			t.Fatalf("re-encoding of an accepted record does not decode: %v", err)
		}
		if !sameRecord(rec, again) {
			t.Fatalf("record changed across encode/decode:\n%+v\n%+v", rec, again)
		}
		reg := newRegistry()
		for _, e := range rec.values {
			_, _ = reg.decode(e) // must not panic on any stored bytes
		}
	})
}

func FuzzCodec(f *testing.F) {
	f.Add("héllo", int64(-1), uint64(math.MaxUint64), math.Float64bits(math.NaN()), true, []byte{0, 255}, int64(1e18), int32(19800))
	f.Add("", int64(math.MinInt64), uint64(0), uint64(0), false, []byte(nil), int64(0), int32(0))
	f.Fuzz(func(t *testing.T, s string, i int64, u uint64, fbits uint64, b bool, raw []byte, nanos int64, offset int32) {
		zone := time.FixedZone("", int(offset%(18*3600)))
		values := []any{s, i, int(i), int8(i), int16(i), int32(i), u, uint(u), uint8(u), uint16(u), uint32(u), uintptr(u),
			math.Float64frombits(fbits), math.Float32frombits(uint32(fbits)), complex(math.Float64frombits(fbits), 1),
			complex64(complex(math.Float32frombits(uint32(fbits)), 0)), b, raw, time.Duration(i), time.Unix(0, nanos).In(zone)}
		reg := newRegistry()
		for _, v := range values {
			e, err := reg.encode(v)
			if err != nil {
				t.Fatalf("encode %T %v: %v", v, v, err)
			}
			rec := &record{values: map[string]entry{"k": e}}
			back, err := decodeRecord(rec.encode())
			if err != nil {
				t.Fatalf("record with %T: %v", v, err)
			}
			got, err := reg.decode(back.values["k"])
			if err != nil || !SameValue(got, v) {
				t.Fatalf("%T %#v came back as %T %#v (%v)", v, v, got, got, err)
			}
		}
	})
}

// SameValue compares session values exactly: same type, same bits for
// floats and complex numbers, same instant, zone name and offset for times,
// nil and empty byte slices apart. Exported for the package's external
// tests (this file is compiled only into the test binary).
func SameValue(a, b any) bool {
	if reflect.TypeOf(a) != reflect.TypeOf(b) {
		return false
	}
	switch x := a.(type) {
	case float64:
		return math.Float64bits(x) == math.Float64bits(b.(float64))
	case float32:
		return math.Float32bits(x) == math.Float32bits(b.(float32))
	case complex128:
		y := b.(complex128)
		return SameValue(real(x), real(y)) && SameValue(imag(x), imag(y))
	case complex64:
		y := b.(complex64)
		return SameValue(real(x), real(y)) && SameValue(imag(x), imag(y))
	case time.Time:
		y := b.(time.Time)
		xn, xo := x.Zone()
		yn, yo := y.Zone()
		return x.Equal(y) && xo == yo && xn == yn
	case []byte:
		y := b.([]byte)
		return (x == nil) == (y == nil) && string(x) == string(y)
	}
	return reflect.DeepEqual(a, b)
}

func sameRecord(a, b *record) bool {
	if !a.created.Equal(b.created) || !a.touched.Equal(b.touched) || !a.idleDeadline.Equal(b.idleDeadline) ||
		!a.absDeadline.Equal(b.absDeadline) || a.csrf != b.csrf || len(a.values) != len(b.values) {
		return false
	}
	for k, e := range a.values {
		if o, ok := b.values[k]; !ok || !o.equal(e) {
			return false
		}
	}
	return true
}

func seedRecords() []*record {
	now := time.Unix(1_900_000_000, 123)
	reg := newRegistry()
	values := map[string]entry{}
	for k, v := range map[string]any{"s": "x", "i": -5, "f": 1.5, "b": []byte{1}, "t": now, "flag": true} {
		values[k], _ = reg.encode(v)
	}
	values["flash"] = entry{kind: kindString, data: []byte("Saved"), flash: true}
	values["custom"] = entry{kind: kindRegistered, typeName: "cart", data: []byte(`{"Items":["a"]}`)}
	full := &record{created: now, touched: now, idleDeadline: now.Add(time.Hour), absDeadline: now.Add(24 * time.Hour),
		csrf: newCSRFToken(), values: values}
	empty := &record{created: now, touched: now, idleDeadline: now, absDeadline: now, values: map[string]entry{}}
	return []*record{full, empty}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	for _, r := range seedRecords() {
		back, err := decodeRecord(r.encode())
		if err != nil || !sameRecord(r, back) {
			t.Errorf("record round trip: %v\n%+v\n%+v", err, r, back)
		}
	}
}

func TestDecodeRecordRejectsDamage(t *testing.T) {
	t.Parallel()
	good := seedRecords()[0].encode()
	for name, b := range map[string][]byte{
		"empty": {}, "wrong version": append([]byte{2}, good[1:]...), "truncated": good[:len(good)-1],
		"trailing byte": append(append([]byte{}, good...), 0), "huge count": {recordVersion, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := decodeRecord(b); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}
