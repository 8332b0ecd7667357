package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"

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
// '{"item_id":1,"images":[{"name":"cat.png","object":"items/1/cat.png/0"}]}'`.
type ProcessItemImages struct {
	ItemID int64      `json:"item_id"`
	Images []ImageRef `json:"images"`
}

// Kind implements bus.Args.
func (ProcessItemImages) Kind() string { return "process-item-images" }

// ImageRef names one uploaded original: the image's name in the item and the
// object holding its bytes in the image bucket.
type ImageRef struct {
	Name   string `json:"name"`
	Object string `json:"object"`
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
// image that cannot be decoded is marked failed and, once the others are
// done, fails the job for good with a reason naming each such file; any
// other error (NATS, database) fails the attempt so that it is retried.
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
			c.markFailed(ctx, a.ItemID, []ImageRef{ref}, be.Error())
			bad = append(bad, be.Error())
			continue
		}
		if err != nil {
			return fmt.Errorf("image %s of item %d: %w", ref.Name, a.ItemID, err)
		}
		c.log.Info().Int64("item_id", a.ItemID).Str("image", ref.Name).Str("job_id", job.ID).Msg("thumbnails made")
	}
	if len(bad) > 0 {
		return workers.Permanent(errors.New(strings.Join(bad, "; ")))
	}
	return nil
}

// checkImageJob refuses arguments that can never work: no item, no images,
// or names and objects that the upload could not have made.
func (c *Catalog) checkImageJob(ctx context.Context, a ProcessItemImages) error {
	if a.ItemID < 1 || len(a.Images) == 0 {
		return workers.Permanent(errors.New(`want {"item_id": N, "images": [{"name": "...", "object": "..."}]}`))
	}
	for _, ref := range a.Images {
		if ref.Name != cleanName(ref.Name) || ref.Object != objectName(a.ItemID, ref.Name, 0) {
			return workers.Permanent(fmt.Errorf("image %q with object %q: want a clean name and the object %q", ref.Name, ref.Object, objectName(a.ItemID, cleanName(ref.Name), 0)))
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

// processImage makes and records the thumbnails of one original.
func (c *Catalog) processImage(ctx context.Context, itemID int64, ref ImageRef) error {
	src, format, err := c.loadOriginal(ctx, ref)
	if err != nil {
		return err
	}
	b := src.Bounds()
	rows := []imageRow{{Name: ref.Name, Size: 0, ObjectName: ref.Object, Width: b.Dx(), Height: b.Dy(), ContentType: "image/" + format}}
	for _, width := range c.cfg.ThumbnailWidths {
		thumb := thumbnail(src, width)
		data, err := encode(thumb, format)
		if err != nil {
			return err
		}
		obj := objectName(itemID, ref.Name, width)
		if err := c.putThumbnail(ctx, obj, data); err != nil {
			return err
		}
		tb := thumb.Bounds()
		rows = append(rows, imageRow{Name: ref.Name, Size: width, ObjectName: obj, Width: tb.Dx(), Height: tb.Dy(), ContentType: "image/" + format})
	}
	return c.recordRenditions(ctx, itemID, rows)
}

// putThumbnail stores one thumbnail within storeTimeout.
func (c *Catalog) putThumbnail(ctx context.Context, name string, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	_, err := c.images.PutBytes(ctx, name, data)
	return err
}

// recordRenditions records one image's original (rows[0]: its size and
// type, no error) and replaces its thumbnails, in one transaction, so the
// image turns "ready" with all its thumbnails at once. The original keeps
// its row, and so its place among the item's images.
func (c *Catalog) recordRenditions(ctx context.Context, itemID int64, rows []imageRow) error {
	return retryDeadlocks(ctx, func() error { return c.recordRenditionsOnce(ctx, itemID, rows) })
}

func (c *Catalog) recordRenditionsOnce(ctx context.Context, itemID int64, rows []imageRow) error {
	orig := rows[0]
	return c.db.Tx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, "DELETE FROM item_images WHERE item_id = ? AND name = ? AND size > 0", itemID, orig.Name); err != nil {
			return err
		}
		var n int
		if err := tx.GetContext(ctx, &n, "SELECT COUNT(*) FROM item_images WHERE item_id = ? AND name = ? AND size = 0", itemID, orig.Name); err != nil {
			return err
		}
		if n > 0 {
			_, err := tx.ExecContext(ctx, "UPDATE item_images SET object_name = ?, width = ?, height = ?, content_type = ?, error = '' WHERE item_id = ? AND name = ? AND size = 0",
				orig.ObjectName, orig.Width, orig.Height, orig.ContentType, itemID, orig.Name)
			if err != nil {
				return err
			}
			rows = rows[1:]
		}
		for _, r := range rows {
			_, err := tx.ExecContext(ctx, "INSERT INTO item_images (item_id, name, size, object_name, width, height, content_type, error) VALUES (?, ?, ?, ?, ?, ?, ?, '')",
				itemID, r.Name, r.Size, r.ObjectName, r.Width, r.Height, r.ContentType)
			if err != nil {
				return err
			}
		}
		return nil
	})
}
