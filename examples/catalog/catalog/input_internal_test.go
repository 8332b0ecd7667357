package catalog

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestBodyErrorOfASlowClientIs408: a body whose read ran past the
// connection's deadline (a real socket's timeout) is the client's delay,
// 408, not a server fault; past the limit it is 413; any other failed
// read is 400.
func TestBodyErrorOfASlowClientIs408(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	_, timeout := c.Read(make([]byte, 1))
	for _, tc := range []struct {
		err    error
		status int
	}{
		{timeout, http.StatusRequestTimeout},
		{&http.MaxBytesError{Limit: 64 << 10}, http.StatusRequestEntityTooLarge},
		{io.ErrUnexpectedEOF, http.StatusBadRequest},
	} {
		var he *httpError
		var tooBig *http.MaxBytesError
		got := bodyError(tc.err)
		switch {
		case errors.As(got, &he) && he.status == tc.status:
		case errors.As(got, &tooBig) && tc.status == http.StatusRequestEntityTooLarge:
		default:
			t.Errorf("bodyError(%v) = %v, want status %d", tc.err, got, tc.status)
		}
	}
}
