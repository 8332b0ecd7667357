package catalog_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
)

// TestUploadThroughALeaderElection: on a three-node cluster with R3
// buckets, the image bucket is read from its stream leader (no direct
// gets, which a lagging follower answers "not found"), and an upload made
// the moment the bucket's leader dies is stored once a new leader is
// elected rather than failing with 500.
func TestUploadThroughALeaderElection(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	ctx := context.Background()
	_, js := natstest.Connect(t, c.URLs())
	cfg := bus.Config{Replicas: 3}
	if err := bus.ProvisionQueues(ctx, js, cfg, catalog.ImagesQueue, catalog.EmailsQueue); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")})
	_, url := serveCatalog(t, js, db, sessions.Config{Replicas: 3}, catalog.Config{Bus: cfg, ImageReplicas: 3})

	s, err := js.Stream(ctx, "OBJ_item_images")
	if err != nil {
		t.Fatal(err)
	}
	info := s.CachedInfo()
	if info.Config.AllowDirect {
		t.Error("the image bucket allows direct gets: a lagging follower could answer that a new upload does not exist")
	}

	client := ct.NewClient(t, url)
	client.Login("ada")
	item := client.CreateItem("lamp", "")
	for i, n := range c.Nodes {
		if n.Name() == info.Cluster.Leader {
			n.Shutdown()
			t.Logf("stopped %s, the image bucket's leader", n.Name())
			t.Cleanup(func() { c.Restart(t, i) })
		}
	}
	began := time.Now()
	code, body := client.Upload(item.ID, ct.File{Name: "photo.png", Data: ct.PNG(40, 30)})
	if code != http.StatusAccepted {
		t.Fatalf("upload while the bucket elects a leader: %d %s, want 202", code, body)
	}
	t.Logf("upload accepted %s after its leader stopped", time.Since(began).Round(time.Millisecond))
}
