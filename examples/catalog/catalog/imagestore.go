package catalog

// The image bucket: its settings, and the writes to it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/leaderless"
)

// JetStream's error codes for a bucket with no room: a write the stream
// could not store (past the bound of a stream that discards new messages,
// among other reasons), and a bound the server has no storage left to
// reserve.
const (
	errCodeStoreFull         = 10077
	errCodeNoRoomForTheBound = 10047
)

// imageBucket opens the Object Store bucket, creating it when missing, and
// brings its stream in line with cfg (see bucketInLine).
func imageBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.ObjectStore, error) {
	_, err := js.ObjectStore(ctx, cfg.ImageBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      cfg.ImageBucket,
			Description: "jetfleet catalog: item images and thumbnails",
			Replicas:    cfg.ImageReplicas,
			MaxBytes:    max(cfg.ImageStoreBytes, -1),
		})
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			err = nil // another node created it meanwhile
		}
	}
	if err == nil {
		err = bucketInLine(ctx, js, "OBJ_"+cfg.ImageBucket, cfg.ImageStoreBytes)
	}
	var obs jetstream.ObjectStore
	if err == nil {
		obs, err = js.ObjectStore(ctx, cfg.ImageBucket) // sees the stream's settings as they are now
	}
	if apiErr := (*jetstream.APIError)(nil); errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeNoRoomForTheBound {
		return nil, fmt.Errorf("catalog: object store %q: the NATS server has no room to reserve its bound of %d bytes (Config.ImageStoreBytes, JETFLEET_IMAGE_STORE_MB): %w",
			cfg.ImageBucket, cfg.ImageStoreBytes, err)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: object store %q: %w", cfg.ImageBucket, err)
	}
	return obs, nil
}

// bucketInLine gives a bucket's stream the bound maxBytes (negative: none)
// and turns off its direct gets, when they differ. nats.go creates Object
// Store buckets with direct gets on, which any replica answers, and a
// follower a moment behind the leader answers "not found" for an object
// stored a moment ago: a worker would then fail an upload the web node had
// just accepted. Without direct gets, reads go to the stream leader, which
// has every acknowledged write. A bucket an earlier version created
// without a bound gets one.
func bucketInLine(ctx context.Context, js jetstream.JetStream, stream string, maxBytes int64) error {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	cfg := s.CachedInfo().Config
	maxBytes = max(maxBytes, -1)
	if !cfg.AllowDirect && cfg.MaxBytes == maxBytes {
		return nil
	}
	cfg.AllowDirect, cfg.MaxBytes = false, maxBytes
	_, err = js.UpdateStream(ctx, cfg)
	return err
}

// storeTimeout bounds one read or write of the Object Store. A request
// whose answer was lost (its server died) would otherwise wait as long as
// the whole job or HTTP request may take. Uploads retry a failed Put for up
// to putRetry while the bucket's stream has no leader: in a cluster, for a
// few seconds after its server dies.
const (
	storeTimeout = 10 * time.Second
	putRetry     = 15 * time.Second
	putRetryWait = 250 * time.Millisecond
)

// putObject stores data under meta. The file is held in memory (a request
// is at most MaxUploadBytes) so that a Put cut off by a leader election
// can be made again: the client's request is not lost to a moment of the
// cluster's. A bucket at its bound refuses the file (507, see storeFull).
func (c *Catalog) putObject(ctx context.Context, meta jetstream.ObjectMeta, data []byte) error {
	stop := time.Now().Add(putRetry)
	for {
		pctx, cancel := context.WithTimeout(ctx, storeTimeout)
		_, err := c.images.Put(pctx, meta, bytes.NewReader(data))
		cancel()
		if isStoreFull(err) {
			return c.storeFull(ctx, meta.Name, len(data))
		}
		if err == nil || !leaderless.Is(err) || time.Now().After(stop) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(putRetryWait):
		}
	}
}

// isStoreFull reports a write the bucket refused because it is at its
// bound (the code also says "store failed" for other reasons, a full disk
// among them).
func isStoreFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFull && strings.Contains(apiErr.Description, "maximum bytes exceeded")
}

// storeFull removes what a refused Put left behind and says why the file
// was refused.
func (c *Catalog) storeFull(ctx context.Context, name string, size int) error {
	c.removeRefused(ctx, name)
	return fail(http.StatusInsufficientStorage, "the image store is full: its bound of %s (JETFLEET_IMAGE_STORE_MB) leaves no room for this %s file; nothing of it was kept",
		byteSize(c.cfg.ImageStoreBytes), byteSize(int64(size)))
}

// removeRefused deletes the object name after the bucket refused its Put:
// nats.go's Put purges the chunks it wrote, but its small description of
// the object may have been stored after the chunk that did not fit.
func (c *Catalog) removeRefused(ctx context.Context, name string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := c.deleteObject(ctx, name); err != nil {
		c.log.Warn().Err(err).Str("object", name).Msg("catalog: a refused upload's description could not be removed")
	}
}
