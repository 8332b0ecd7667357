package node_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
)

func TestOpenNamesTheAppOnceInAnInitError(t *testing.T) {
	srv := natstest.Start(t)
	nc, _ := natstest.Connect(t, srv.ClientURL())
	for _, tc := range []struct{ err, want string }{
		{"SHOP_RECEIPTS_FROM is not set", "shop: init: SHOP_RECEIPTS_FROM is not set"},
		{"shop: SHOP_RECEIPTS_FROM is not set", "init: shop: SHOP_RECEIPTS_FROM is not set"},
		{"shopping: a cart is missing", "shop: init: shopping: a cart is missing"},
	} {
		cause := errors.New(tc.err)
		app := node.App{Name: "shop", Init: func(context.Context, *node.Services) error { return cause }}
		n, err := node.Open(context.Background(), app, node.Config{Conn: nc, DataDir: t.TempDir(), Getenv: func(string) string { return "" }})
		if err == nil {
			n.Close()
			t.Fatalf("Init returned %q, Open succeeded", tc.err)
		}
		if err.Error() != tc.want {
			t.Errorf("Init returned %q: Open's error is %q, want %q", tc.err, err, tc.want)
		}
		if !errors.Is(err, cause) {
			t.Errorf("Open's error %q does not wrap Init's", err)
		}
	}
}
