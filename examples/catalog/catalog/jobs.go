package catalog

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"image"
	"strings"

	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/workers"
)

// SendWelcomeEmail is the job dispatched on the emails queue when a user
// logs in for the first time. Its handler writes the email to the outbox
// table, once per user however often the job runs.
type SendWelcomeEmail struct {
	UserID int64 `json:"user_id"`
}

// Kind implements bus.Args.
func (SendWelcomeEmail) Kind() string { return "send-welcome-email" }

// ProcessItemImages is the job dispatched on the high queue after an
// upload: make the thumbnails of the item's uploaded originals. Any language
// can send it: `nats pub jobs.high.process-item-images
// '{"item_id":1,"images":[{"name":"cat.png","version":"9f1c2a7e5b3d4c60","object":"items/1/cat.png/9f1c2a7e5b3d4c60/0"}]}'`.
// It only ever changes the rows of the versions it names: an image
// uploaded again since is left to the later upload's job.
type ProcessItemImages struct {
	ItemID int64      `json:"item_id"`
	Images []ImageRef `json:"images"`
}

// Kind implements bus.Args.
func (ProcessItemImages) Kind() string { return "process-item-images" }

// ImageRef names one uploaded original: the image's name in the item, the
// upload's version, and the object holding its bytes in the image bucket
// (items/<item>/<name>/<version>/0).
type ImageRef struct {
	Name   string `json:"name"`
	Object string `json:"object"`
	// Version identifies this upload of Name: each upload gets a new one,
	// with its own objects and row, so a later upload of the same name
	// never mixes with this one. "" names an upload made before versions
	// (object items/<item>/<name>/0).
	Version string `json:"version,omitempty"`
}

// sendWelcomeEmail writes the welcome email of job.Args.UserID to the
// outbox, unless it is there already (the job may run more than once).
func (c *Catalog) sendWelcomeEmail(ctx context.Context, job *workers.Job[SendWelcomeEmail]) error {
	var u User
	// The user was created just before the job was dispatched, by the
	// request whose causal token the job carries: this read goes to a
	// replica that has the user, or to the primary (node's worker
	// middleware, readmodel.JobContext).
	err := c.db.Get(ctx, &u, "SELECT id, name FROM users WHERE id = ?", job.Args.UserID)
	if errors.Is(err, sql.ErrNoRows) {
		return workers.Permanent(fmt.Errorf("user %d does not exist", job.Args.UserID))
	}
	if err != nil {
		return err
	}
	return c.db.Tx(ctx, func(tx *sqlx.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, "SELECT COUNT(*) FROM outbox WHERE kind = 'welcome' AND recipient = ?", u.Name); err != nil || n > 0 {
			return err
		}
		body := fmt.Sprintf("Welcome to the jetfleet catalog, %s! Create an item and give it some pictures.", u.Name)
		_, err := tx.ExecContext(ctx, "INSERT INTO outbox (kind, recipient, body) VALUES ('welcome', ?, ?)", u.Name, body)
		return err
	})
}

// processItemImages makes the thumbnails of every image of the job. An
// image that can never be processed (not an image, too large for the
// worker's memory budget, gone) is marked failed and its objects are
// deleted; once the others are done, the job fails for good with a reason
// naming each such file. Any other error (NATS, database) fails the
// attempt so that it is retried. An image already done, failed or
// uploaded again since is skipped: the job can run again safely.
func (c *Catalog) processItemImages(ctx context.Context, job *workers.Job[ProcessItemImages]) error {
	a := job.Args
	if err := c.checkImageJob(ctx, a); err != nil {
		return err
	}
	var bad []string
	for _, ref := range a.Images {
		err := c.processImage(ctx, a.ItemID, ref)
		var be *badImageError
		if errors.As(err, &be) {
			if err := c.failImages(ctx, a.ItemID, []ImageRef{ref}, be.Error()); err != nil {
				return err
			}
			bad = append(bad, be.Error())
			continue
		}
		if err != nil {
			return fmt.Errorf("image %s of item %d: %w", ref.Name, a.ItemID, err)
		}
	}
	if len(bad) > 0 {
		return workers.Permanent(errors.New(strings.Join(bad, "; ")))
	}
	return nil
}

// imageJobDead is process-item-images' dead-letter hook: however the job
// ended in the dead letters (its tries used up, a timeout, a panic, a
// worker killed during its last attempt), the images it left
// "processing" are marked failed with the reason, and their objects are
// deleted. It runs at least once (see workers.OnDeadLetter); running it
// again changes nothing. A body that does not decode names no image.
func (c *Catalog) imageJobDead(ctx context.Context, job *workers.Job[ProcessItemImages], reason string) error {
	a := job.Args
	if a.ItemID < 1 {
		return nil
	}
	line, _, _ := strings.Cut(reason, "\n")
	return c.failImages(ctx, a.ItemID, a.Images, "not processed: "+line)
}

// checkImageJob refuses arguments that can never work: no item, no images,
// or names, versions and objects that the upload could not have made.
func (c *Catalog) checkImageJob(ctx context.Context, a ProcessItemImages) error {
	if a.ItemID < 1 || len(a.Images) == 0 {
		return workers.Permanent(errors.New(`want {"item_id": N, "images": [{"name": "...", "version": "...", "object": "..."}]}`))
	}
	for _, ref := range a.Images {
		if err := checkRef(a.ItemID, ref); err != nil {
			return workers.Permanent(err)
		}
	}
	if _, err := c.itemOwner(ctx, a.ItemID); err != nil { // causal: sees the upload's request
		var he *httpError
		if errors.As(err, &he) {
			return workers.Permanent(err)
		}
		return err
	}
	return nil
}

// processImage makes and records the thumbnails of one version of an
// original, unless that version is not "processing" any more. A version
// uploaded again since has its objects deleted: an attempt cut short may
// have stored thumbnails no row names.
func (c *Catalog) processImage(ctx context.Context, itemID int64, ref ImageRef) error {
	state, err := c.versionState(ctx, itemID, ref)
	if err != nil {
		return err
	}
	if state == stateGone {
		return c.deleteVersion(ctx, itemID, ref)
	}
	if state != stateProcessing {
		return nil
	}
	work, err := c.loadOriginal(ctx, ref)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		if state, serr := c.versionState(ctx, itemID, ref); serr != nil || state == stateGone {
			return serr // uploaded again meanwhile: the later job's business
		}
	}
	if err != nil {
		return err
	}
	defer work.release()
	rows, stored, err := c.makeThumbnails(ctx, itemID, ref, work)
	if err == nil {
		err = c.recordRenditions(ctx, itemID, ref, rows)
	}
	if errors.Is(err, errNotProcessing) {
		c.log.Info().Int64("item_id", itemID).Str("image", ref.Name).Msg("image uploaded again or failed meanwhile: thumbnails dropped")
		c.deleteObjectNames(ctx, stored)
		return nil
	}
	if err == nil {
		c.log.Info().Ctx(ctx).Int64("item_id", itemID).Str("image", ref.Name).Str("version", ref.Version).Msg("thumbnails made")
	}
	return err
}

// makeThumbnails stores the thumbnails of work's image and returns the
// rows to record and the objects stored.
func (c *Catalog) makeThumbnails(ctx context.Context, itemID int64, ref ImageRef, work *imageWork) ([]imageRow, []string, error) {
	b := work.img.Bounds()
	rows := []imageRow{{Name: ref.Name, Size: 0, Version: ref.Version, ObjectName: ref.Object, Width: b.Dx(), Height: b.Dy(), ContentType: "image/" + work.format}}
	var stored []string
	err := renderThumbnails(work.img, work.format, c.cfg.ThumbnailWidths, func(width int, thumb image.Image, data []byte) error {
		obj := objectName(itemID, ref.Name, ref.Version, width)
		if err := c.putThumbnail(ctx, obj, data); err != nil {
			return err
		}
		stored = append(stored, obj)
		tb := thumb.Bounds()
		rows = append(rows, imageRow{Name: ref.Name, Size: width, Version: ref.Version, ObjectName: obj, Width: tb.Dx(), Height: tb.Dy(), ContentType: "image/" + work.format})
		return nil
	})
	return rows, stored, err
}

// putThumbnail stores one thumbnail within storeTimeout. A bucket at its
// bound refuses it: the job fails, saying so, and retries.
func (c *Catalog) putThumbnail(ctx context.Context, name string, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	_, err := c.images.PutBytes(ctx, name, data)
	if isStoreFull(err) {
		c.removeRefused(ctx, name)
		return fmt.Errorf("the image store is full (its bound, JETFLEET_IMAGE_STORE_MB, is %s): %w", byteSize(c.cfg.ImageStoreBytes), err)
	}
	return err
}

// errNotProcessing: the version whose thumbnails were made is not
// "processing" any more (uploaded again, or failed by a dead-letter hook).
var errNotProcessing = errors.New("the image version is not processing any more")

// recordRenditions records one version's original (rows[0]: its size and
// type) and replaces the name's thumbnails, in one transaction, so the
// image turns "ready" with all its thumbnails at once; errNotProcessing
// when that version is no longer the processing one. The original keeps
// its row, and so its place among the item's images.
func (c *Catalog) recordRenditions(ctx context.Context, itemID int64, ref ImageRef, rows []imageRow) error {
	return retryDeadlocks(ctx, func() error { return c.recordRenditionsOnce(ctx, itemID, ref, rows) })
}

func (c *Catalog) recordRenditionsOnce(ctx context.Context, itemID int64, ref ImageRef, rows []imageRow) error {
	orig := rows[0]
	return c.db.Tx(ctx, func(tx *sqlx.Tx) error {
		// The UPDATE locks the row of this version if it still is the
		// processing one; a later upload's DELETE waits for this commit.
		res, err := tx.ExecContext(ctx, "UPDATE item_images SET width = ?, height = ?, content_type = ? WHERE item_id = ? AND name = ? AND size = 0 AND version = ? AND width = 0 AND error = ''",
			orig.Width, orig.Height, orig.ContentType, itemID, ref.Name, ref.Version)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return cmp.Or(err, c.notProcessing(ctx, tx, itemID, ref))
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM item_images WHERE item_id = ? AND name = ? AND size > 0", itemID, ref.Name); err != nil {
			return err
		}
		for _, r := range rows[1:] {
			_, err := tx.ExecContext(ctx, "INSERT INTO item_images (item_id, name, size, version, object_name, width, height, content_type, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '')",
				itemID, r.Name, r.Size, r.Version, r.ObjectName, r.Width, r.Height, r.ContentType)
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// notProcessing says why no row of ref's version was processing: nil when
// the version is ready (another run of the job recorded it, with the same
// objects), errNotProcessing when it failed or was replaced.
func (c *Catalog) notProcessing(ctx context.Context, tx *sqlx.Tx, itemID int64, ref ImageRef) error {
	var n int
	err := tx.GetContext(ctx, &n, "SELECT COUNT(*) FROM item_images WHERE item_id = ? AND name = ? AND size = 0 AND version = ? AND width > 0 AND error = ''", itemID, ref.Name, ref.Version)
	if err != nil || n > 0 {
		return err
	}
	return errNotProcessing
}
