package catalog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/readmodel"
)

// Every upload of an image is a version of its own: a new random
// version string, its own objects (objectName) and its own row. A later
// upload of the same name replaces the row and deletes the earlier
// version's objects; a job only ever touches the row of the version it
// was made for. So what the item shows and what GET serves always come
// from one upload, whatever order uploads and jobs run in.

// newVersion returns a fresh upload version: 16 lowercase hex digits.
func newVersion() string {
	b := make([]byte, 8)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// validVersion reports whether v can be an upload's version: "" (an
// upload made before versions existed) or up to 32 lowercase letters and
// digits.
func validVersion(v string) bool {
	if len(v) > 32 {
		return false
	}
	for _, r := range v {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// objectName is where a version of an image's rendition is stored: size 0
// is the original. Version "" is the layout of uploads made before
// versions, which existing rows still name.
func objectName(itemID int64, name, version string, size int) string {
	if version == "" {
		return fmt.Sprintf("items/%d/%s/%d", itemID, name, size)
	}
	return fmt.Sprintf("items/%d/%s/%s/%d", itemID, name, version, size)
}

// checkRef reports why ref cannot be one the upload of item itemID made:
// a name cleanName would change, a malformed version, or an object other
// than the version's original. A job naming such a ref could make the
// worker read or delete objects of another item.
func checkRef(itemID int64, ref ImageRef) error {
	if ref.Name != cleanName(ref.Name) || !validVersion(ref.Version) || ref.Object != objectName(itemID, ref.Name, ref.Version, 0) {
		return fmt.Errorf("image %q version %q with object %q: want a clean name, a version of up to 32 letters and digits, and the object %q",
			ref.Name, ref.Version, ref.Object, objectName(itemID, cleanName(ref.Name), ref.Version, 0))
	}
	return nil
}

// imageState is where a version of an image stands in the database.
type imageState int

const (
	// stateGone: no row of this version, replaced by a later upload (or
	// its item was deleted).
	stateGone imageState = iota
	stateProcessing
	stateReady
	stateFailed
)

// versionState reads the state of ref's version from the primary (the
// upload that made it was written there a moment ago).
func (c *Catalog) versionState(ctx context.Context, itemID int64, ref ImageRef) (imageState, error) {
	var row imageRow
	err := c.db.Get(readmodel.UsePrimary(ctx), &row, "SELECT version, width, error FROM item_images WHERE item_id = ? AND name = ? AND size = 0", itemID, ref.Name)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return stateGone, nil
	case err != nil:
		return stateGone, fmt.Errorf("image %s of item %d: %w", ref.Name, itemID, err)
	case row.Version != ref.Version:
		return stateGone, nil
	case row.Error != "":
		return stateFailed, nil
	case row.Width > 0:
		return stateReady, nil
	}
	return stateProcessing, nil
}

// failImages records reason as why each of refs still processing cannot
// be processed, then deletes the objects of every version among refs that
// is not ready (failed now or before, or replaced): a failed upload keeps
// its row, to show why, but not its bytes. Refs an upload of item itemID
// could not have made are skipped. An error (the database's, the object
// store's) leaves the rest undone; running it again finishes the work and
// changes nothing else.
func (c *Catalog) failImages(ctx context.Context, itemID int64, refs []ImageRef, reason string) error {
	for _, ref := range refs {
		if checkRef(itemID, ref) != nil {
			continue
		}
		_, err := c.db.Exec(ctx, "UPDATE item_images SET error = ? WHERE item_id = ? AND name = ? AND version = ? AND size = 0 AND width = 0 AND error = ''",
			truncate(reason, 1000), itemID, ref.Name, ref.Version)
		if err != nil {
			return fmt.Errorf("mark image %s of item %d failed: %w", ref.Name, itemID, err)
		}
		state, err := c.versionState(ctx, itemID, ref)
		if err != nil {
			return err
		}
		if state == stateReady {
			continue
		}
		if err := c.deleteVersion(ctx, itemID, ref); err != nil {
			return err
		}
	}
	return nil
}

// deleteVersion deletes the original and the thumbnails of ref's version.
func (c *Catalog) deleteVersion(ctx context.Context, itemID int64, ref ImageRef) error {
	names := []string{objectName(itemID, ref.Name, ref.Version, 0)}
	for _, w := range c.cfg.ThumbnailWidths {
		names = append(names, objectName(itemID, ref.Name, ref.Version, w))
	}
	for _, name := range names {
		if err := c.deleteObject(ctx, name); err != nil {
			return fmt.Errorf("delete %s of failed image %s: %w", name, ref.Name, err)
		}
	}
	return nil
}

// deleteObjectNames deletes objects, logging what cannot be deleted: an
// object left behind wastes space but breaks nothing.
func (c *Catalog) deleteObjectNames(ctx context.Context, names []string) {
	for _, name := range names {
		if err := c.deleteObject(ctx, name); err != nil {
			c.log.Warn().Err(err).Str("object", name).Msg("cannot delete an object no image uses")
		}
	}
}

// deleteObject deletes the object name, and the description its deletion
// leaves: nats.go's Delete keeps a "deleted" description of the object on
// $O.<bucket>.M.<name> for good, which every replaced version, refused
// upload and failed image would add to the bucket's bound until uploads
// got 507. An object that is not there is no error.
func (c *Catalog) deleteObject(ctx context.Context, name string) error {
	if err := c.images.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return err
	}
	return c.imageStream.Purge(ctx, jetstream.WithPurgeSubject("$O."+c.cfg.ImageBucket+".M."+base64.URLEncoding.EncodeToString([]byte(name))))
}

// truncate cuts s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") // drops a character cut in half
}
