package catalog_test

import (
	"net/http"
	"testing"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
)

// TestCatalogBadInput sends every bad request of catalogtest.BadRequests and
// checks that each gets the expected 4xx with a message saying what is
// wrong, never a 500, and that none of them changed anything.
func TestCatalogBadInput(t *testing.T) {
	a := startApp(t, false)
	bob := ct.NewClient(t, a.url)
	bob.Login("bob")
	ann := ct.NewClient(t, a.url)
	ann.Login("ann")
	own := ann.CreateItem("mine", "")
	bobs := bob.CreateItem("bob's", "")
	ct.RunBadRequests(t, ann, ct.BadRequests(own.ID, bobs.ID, 1<<20, 3))

	var page struct{ Items []any }
	ann.JSON(http.MethodGet, "/items", nil, http.StatusOK, &page)
	if len(page.Items) != 2 {
		t.Fatalf("items after the bad requests: %d, want 2", len(page.Items))
	}
	if it := ann.Item(own.ID, http.StatusOK); len(it.Images) != 0 {
		t.Fatalf("item %d has images after refused uploads: %+v", own.ID, it.Images)
	}
	if left := objects(t, a.js, ""); len(left) != 0 {
		t.Fatalf("refused uploads left objects behind: %v", left)
	}
}
