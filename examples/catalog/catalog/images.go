package catalog

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/node"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
)

// Image is one uploaded image of an item, as the API shows it.
type Image struct {
	Name string `json:"name"`
	// Status is "processing" until the worker has made the thumbnails,
	// then "ready", or "failed" with Error saying why.
	Status      string `json:"status"`
	Error       string `json:"error,omitempty"`
	Width       int    `json:"width,omitempty"`
	Height      int    `json:"height,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	// Version identifies the upload the image shows: each upload of a
	// name is a new version ("" for uploads made before versions).
	Version string `json:"version,omitempty"`
	URL     string `json:"url"`
	// Thumbnails are the resized copies, narrowest first.
	Thumbnails []Thumbnail `json:"thumbnails"`
}

// Thumbnail is one resized copy of an image; Size is its ?size= value.
type Thumbnail struct {
	Size   int    `json:"size"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	URL    string `json:"url"`
}

// imageRow is a row of item_images: size 0 is the original. Every row of
// a name belongs to one upload, its version.
type imageRow struct {
	Name        string `db:"name"`
	Size        int    `db:"size"`
	Version     string `db:"version"`
	ObjectName  string `db:"object_name"`
	Width       int    `db:"width"`
	Height      int    `db:"height"`
	ContentType string `db:"content_type"`
	Error       string `db:"error"`
}

// imagesOf builds the images of item id, with their thumbnails, from its
// image rows (ordered by id, then size).
func imagesOf(id int64, rows []imageRow) []Image {
	images := []Image{}
	index := map[string]int{}
	for _, row := range rows {
		url := fmt.Sprintf("/items/%d/images/%s", id, row.Name)
		if row.Size == 0 {
			index[row.Name] = len(images)
			images = append(images, Image{Name: row.Name, Status: "processing", Error: row.Error, Width: row.Width,
				Height: row.Height, ContentType: row.ContentType, Version: row.Version, URL: url, Thumbnails: []Thumbnail{}})
			continue
		}
		if i, ok := index[row.Name]; ok && images[i].Version == row.Version {
			images[i].Thumbnails = append(images[i].Thumbnails, Thumbnail{Size: row.Size, Width: row.Width, Height: row.Height, URL: url + "?size=" + strconv.Itoa(row.Size)})
		}
	}
	for i := range images {
		slices.SortFunc(images[i].Thumbnails, func(a, b Thumbnail) int { return a.Size - b.Size })
		switch {
		case images[i].Error != "":
			images[i].Status = "failed"
		case images[i].Width > 0:
			images[i].Status = "ready"
		}
	}
	return images
}

// ownItem checks that the request's user owns item id: a 404 when it
// does not exist, a 403 when someone else owns it.
func (c *Catalog) ownItem(r *http.Request, id int64) error {
	u, err := currentUser(r)
	if err != nil {
		return err
	}
	owner, err := c.itemOwner(r.Context(), id)
	if err != nil {
		return err
	}
	if owner.ID != u.ID {
		return fail(http.StatusForbidden, "item %d belongs to %s: only its owner can add images", id, owner.Name)
	}
	return nil
}

// itemOwner returns the owner of item id, or a 404.
func (c *Catalog) itemOwner(ctx context.Context, id int64) (User, error) {
	var owner User
	err := c.db.Get(ctx, &owner, "SELECT u.id, u.name FROM items i JOIN users u ON u.id = i.user_id WHERE i.id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return owner, fail(http.StatusNotFound, "item %d does not exist", id)
	}
	return owner, err
}

// uploadImages is POST /items/{id}/images, multipart with the files in the
// field "images". Each file is read into memory (a request holds at most
// MaxUploadBytes) and stored in the Object Store as a new version of its
// name, retried through a leader election; the node keeps nothing on
// disk. The files are recorded as "processing", replacing earlier
// versions of the same names (whose objects are then deleted), and
// process-item-images is dispatched on the high queue, through
// Config.Outbox (in the transaction that records the upload) when it is
// set: 202 with the job's ID.
func (c *Catalog) uploadImages(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if err := c.ownItem(r, id); err != nil {
		return err
	}
	select {
	case c.uploads <- struct{}{}:
		defer func() { <-c.uploads }()
	default:
		w.Header().Set("Retry-After", "1")
		return fail(http.StatusServiceUnavailable, "this node is reading %d uploads already (JETFLEET_MAX_UPLOADS_IN_FLIGHT): try again in a moment", cap(c.uploads))
	}
	// The node's read timeout covers an ordinary request; an upload of up
	// to MaxUploadBytes gets time for its size, but only the owner's, once
	// it holds one of the node's upload slots: a refused request's body is
	// drained under the ordinary timeout. (A server that cannot extend
	// deadlines keeps its own, which is no reason to refuse.)
	if err := node.AllowUpload(w, r, c.cfg.MaxUploadBytes); err != nil {
		c.log.Debug().Err(err).Msg("upload keeps the server's read and write deadlines")
	}
	refs, err := c.receiveFiles(r, id)
	if err != nil {
		return err
	}
	ctx := r.Context()
	replaced, jobID, err := c.recordUploads(ctx, id, refs)
	if err != nil {
		c.deleteObjects(context.WithoutCancel(ctx), refs)
		return err
	}
	c.deleteObjectNames(context.WithoutCancel(ctx), replaced) // even if the client has gone
	if c.cfg.Outbox == nil {
		if jobID, err = c.dispatchProcessing(ctx, id, refs); err != nil {
			return err
		}
	}
	if wantsHTML(r) {
		http.Redirect(w, r, fmt.Sprintf("/view/items/%d", id), http.StatusSeeOther)
		return nil
	}
	names := make([]string, len(refs))
	for i, ref := range refs {
		names[i] = ref.Name
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"job_id": jobID, "item_id": id, "images": names, "item_url": fmt.Sprintf("/items/%d", id)})
	return nil
}

// dispatchProcessing dispatches the processing job of an upload recorded
// without an outbox; when the dispatch fails, the images are marked
// failed (with an outbox, the job is written with the upload instead).
func (c *Catalog) dispatchProcessing(ctx context.Context, id int64, refs []ImageRef) (string, error) {
	jobID, err := c.jobs.Dispatch(ctx, ProcessItemImages{ItemID: id, Images: refs}, bus.OnQueue(ImagesQueue))
	if err != nil {
		if ferr := c.failImages(context.WithoutCancel(ctx), id, refs, "not queued for processing: "+err.Error()); ferr != nil {
			c.log.Error().Ctx(ctx).Err(ferr).Int64("item_id", id).Msg("cannot record that images were not queued")
		}
		return "", fmt.Errorf("dispatch process-item-images: %w", err)
	}
	return jobID, nil
}

// receiveFiles streams the request's files into the Object Store. On any
// failure the objects it stored are deleted again.
func (c *Catalog) receiveFiles(r *http.Request, id int64) (refs []ImageRef, err error) {
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, fail(http.StatusBadRequest, "send the images as multipart/form-data in the field \"images\" (%v)", err)
	}
	defer func() {
		if err != nil {
			c.deleteObjects(context.WithoutCancel(r.Context()), refs)
			refs = nil
		}
	}()
	csrfOK := checkCSRF(r, r.Header.Get(sessions.CSRFHeader))
	for n := 1; ; n++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return refs, badMultipart(err)
		}
		if err := checkPartHeader(n, part); err != nil {
			return refs, err
		}
		switch part.FormName() {
		case sessions.CSRFField:
			tok, _ := io.ReadAll(io.LimitReader(part, 256))
			csrfOK = csrfOK || checkCSRF(r, string(tok))
		case "images":
			if !csrfOK {
				return refs, fail(sessions.StatusPageExpired, "no valid CSRF token: send it in the %s header or in a %s field before the files", sessions.CSRFHeader, sessions.CSRFField)
			}
			if part.FileName() == "" { // a browser's empty file input
				continue
			}
			if len(refs) == c.cfg.MaxFiles {
				return refs, fail(http.StatusBadRequest, "too many files: at most %d per upload", c.cfg.MaxFiles)
			}
			ref, err := c.storeFile(r.Context(), id, part, refs)
			if err != nil {
				return refs, err
			}
			refs = append(refs, ref)
		default:
			return refs, fail(http.StatusBadRequest, "unexpected field %q: send the files in the field \"images\"", clip(part.FormName()))
		}
	}
	if len(refs) == 0 {
		return nil, fail(http.StatusBadRequest, "no files: send one or more in the multipart field \"images\"")
	}
	return refs, nil
}

// Limits of a multipart part's header: a file name longer than file
// systems allow, or a header longer than any browser sends, is refused
// before anything of the part is stored.
const (
	maxFileName   = 255
	maxPartHeader = 8 << 10
)

// checkPartHeader refuses the n-th part of an upload when its file name
// or its header is too long.
func checkPartHeader(n int, part *multipart.Part) error {
	if l := len(part.FileName()); l > maxFileName {
		return fail(http.StatusBadRequest, "file name is %d bytes long: at most %d are accepted", l, maxFileName)
	}
	size := 0
	for k, vs := range part.Header {
		for _, v := range vs {
			size += len(k) + len(v) + 4 // "k: v\r\n"
		}
	}
	if size > maxPartHeader {
		return fail(http.StatusBadRequest, "the header of part %d is %d bytes: at most %s are accepted", n, size, byteSize(maxPartHeader))
	}
	return nil
}

// storeFile streams one part into the Object Store under a name that no
// earlier file of the request has.
func (c *Catalog) storeFile(ctx context.Context, id int64, p *multipart.Part, earlier []ImageRef) (ImageRef, error) {
	base := cleanName(p.FileName())
	name := base
	for n := 2; slices.ContainsFunc(earlier, func(e ImageRef) bool { return e.Name == name }); n++ {
		ext := path.Ext(base)
		name = fmt.Sprintf("%s-%d%s", strings.TrimSuffix(base, ext), n, ext)
	}
	version := newVersion()
	ref := ImageRef{Name: name, Version: version, Object: objectName(id, name, version, 0)}
	data, err := io.ReadAll(p)
	if err != nil { // the client's side: too large, broken off, malformed
		return ref, badMultipart(err)
	}
	if len(data) == 0 {
		return ref, fail(http.StatusBadRequest, "file %s is empty", p.FileName())
	}
	meta := jetstream.ObjectMeta{Name: ref.Object, Headers: nats.Header{"Filename": {p.FileName()}}}
	if err := c.putObject(ctx, meta, data); err != nil { // the Object Store's side
		return ref, fmt.Errorf("store %s in the object store: %w", ref.Object, err)
	}
	return ref, nil
}

// badMultipart answers a body that broke off or is malformed.
func badMultipart(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errTooLarge(tooBig.Limit)
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fail(http.StatusBadRequest, "the multipart body cannot be read: %v", err)
}

// checkCSRF compares tok with the session's CSRF token in constant time.
func checkCSRF(r *http.Request, tok string) bool {
	want := sessions.CSRFToken(r.Context())
	return tok != "" && want != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1
}

// recordUploads records each upload as a "processing" original of its
// version, replacing the rows of an earlier version of the same name, and
// returns the objects of the versions it replaced, for the caller to
// delete once the rows are committed.
func (c *Catalog) recordUploads(ctx context.Context, id int64, refs []ImageRef) (replaced []string, jobID string, err error) {
	err = retryDeadlocks(ctx, func() error {
		replaced, jobID, err = c.recordUploadsOnce(ctx, id, refs)
		return err
	})
	return replaced, jobID, err
}

// retryDeadlocks runs tx, a transaction, and runs it again, a few times,
// when InnoDB picked it as a deadlock victim: concurrent uploads and
// thumbnails of other items lock neighbouring index gaps.
func retryDeadlocks(ctx context.Context, tx func() error) error {
	var err error
	for attempt := range 5 {
		if err = tx(); !isDeadlock(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
		}
	}
	return err
}

// isDeadlock reports whether err is MySQL/MariaDB's "Deadlock found when
// trying to get lock" (1213), after which the transaction can be retried.
func isDeadlock(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1213
}

// recordUploadsOnce records refs as the item's images in one transaction,
// replacing earlier versions of the same names, whose objects it returns.
// With Config.Outbox, the processing job is written in that transaction
// too, and its ID returned.
func (c *Catalog) recordUploadsOnce(ctx context.Context, id int64, refs []ImageRef) ([]string, string, error) {
	var replaced []string
	record := func(tx *sqlx.Tx) error {
		for _, ref := range refs {
			// DELETE only what exists: a DELETE that finds nothing locks the
			// gap after the newest item, where other uploads insert.
			var old []string
			if err := tx.SelectContext(ctx, &old, "SELECT object_name FROM item_images WHERE item_id = ? AND name = ?", id, ref.Name); err != nil {
				return err
			}
			if len(old) > 0 {
				if _, err := tx.ExecContext(ctx, "DELETE FROM item_images WHERE item_id = ? AND name = ?", id, ref.Name); err != nil {
					return err
				}
			}
			replaced = append(replaced, old...)
			if _, err := tx.ExecContext(ctx, "INSERT INTO item_images (item_id, name, size, version, object_name) VALUES (?, ?, 0, ?, ?)", id, ref.Name, ref.Version, ref.Object); err != nil {
				return err
			}
		}
		return nil
	}
	if c.cfg.Outbox == nil {
		err := c.db.Tx(ctx, record)
		return replaced, "", err
	}
	var jobID string
	err := c.cfg.Outbox.Tx(ctx, func(tx *readmodel.Tx) error {
		if err := record(tx.Tx); err != nil {
			return err
		}
		var err error
		jobID, err = tx.Dispatch(ctx, ProcessItemImages{ItemID: id, Images: refs}, bus.OnQueue(ImagesQueue))
		return err
	})
	return replaced, jobID, err
}

// deleteObjects deletes the objects of refs, an upload given up.
func (c *Catalog) deleteObjects(ctx context.Context, refs []ImageRef) {
	names := make([]string, len(refs))
	for i, ref := range refs {
		names[i] = ref.Object
	}
	c.deleteObjectNames(ctx, names)
}

// serveImage is GET /items/{id}/images/{name}?size=N: it streams the
// original (size 0, the default) or a thumbnail from the Object Store.
func (c *Catalog) serveImage(w http.ResponseWriter, r *http.Request) error {
	if _, err := currentUser(r); err != nil {
		return err
	}
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	size, err := queryInt(r, "size", 0, 0, 4096)
	if err != nil {
		return err
	}
	if size != 0 && !slices.Contains(c.cfg.ThumbnailWidths, int(size)) {
		return fail(http.StatusBadRequest, "size=%d: want 0 (the original) or one of the thumbnail sizes %v", size, c.cfg.ThumbnailWidths)
	}
	var row imageRow
	err = c.db.Get(r.Context(), &row, "SELECT i.name, i.size, i.version, i.object_name, i.width, i.height, i.content_type, o.error FROM item_images i JOIN item_images o ON o.item_id = i.item_id AND o.name = i.name AND o.size = 0 WHERE i.item_id = ? AND i.name = ? AND i.size = ?", id, name, size)
	if errors.Is(err, sql.ErrNoRows) {
		if _, err := c.itemOwner(r.Context(), id); err != nil {
			return err
		}
		return fail(http.StatusNotFound, "item %d has no image %q of size %d (thumbnails appear when the worker has made them)", id, clip(name), size)
	}
	if err != nil {
		return err
	}
	if row.Error != "" {
		return fail(http.StatusNotFound, "image %q could not be processed, and is not kept: %s", name, row.Error)
	}
	return c.streamObject(w, r, row)
}

// streamObject copies a stored image to w. Only a type the worker checked
// by decoding this very version is served inline; anything else is a
// download, so an uploaded HTML file can never run as a page of this site.
// The ETag names the version, the size and the type the worker found: a
// client revalidates (no-cache) and gets a new upload as soon as there is
// one.
func (c *Catalog) streamObject(w http.ResponseWriter, r *http.Request, row imageRow) error {
	etag := fmt.Sprintf(`"%s-%d-%s"`, row.Version, row.Size, strings.TrimPrefix(row.ContentType, "image/"))
	if row.Version != "" && r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	obj, err := c.images.Get(r.Context(), row.ObjectName)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fail(http.StatusNotFound, "image %q is gone from the object store", row.Name)
	}
	if err != nil {
		return err
	}
	defer obj.Close()
	info, err := obj.Info()
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Security-Policy", basePolicy+"; sandbox") // should a browser render it anyway
	h.Set("Cache-Control", "private, no-cache")
	if row.Version != "" {
		h.Set("ETag", etag)
	}
	h.Set("Content-Length", strconv.FormatUint(info.Size, 10))
	if row.ContentType == "image/jpeg" || row.ContentType == "image/png" {
		h.Set("Content-Type", row.ContentType)
	} else {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", "attachment")
	}
	if r.Method != http.MethodHead {
		io.Copy(w, obj) // a failure now can only cut the response short
	}
	return nil
}

// cleanName turns an uploaded file's name into a URL-safe image name:
// letters, digits, '.', '_' and '-' only, at most 100 bytes.
func cleanName(filename string) string {
	base := path.Base(strings.ReplaceAll(filename, `\`, "/"))
	var b strings.Builder
	for _, r := range base {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), ".-")
	if len(s) > 100 {
		s = strings.Trim(s[len(s)-100:], ".-")
	}
	if s == "" {
		s = "image"
	}
	return s
}
