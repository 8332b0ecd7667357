package catalog

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// Item is one catalog entry. Images is filled by GET /items/{id} only.
type Item struct {
	ID          int64     `db:"id" json:"id"`
	UserID      int64     `db:"user_id" json:"user_id"`
	Owner       string    `db:"owner" json:"owner"`
	Name        string    `db:"name" json:"name"`
	Description string    `db:"description" json:"description"`
	CreatedAt   time.Time `db:"created_at" json:"created_at"`
	Images      []Image   `db:"-" json:"images,omitempty"`
}

const itemColumns = "i.id, i.user_id, u.name AS owner, i.name, i.description, i.created_at FROM items i JOIN users u ON u.id = i.user_id"

// createItem is POST /items {"name": "...", "description": "..."}.
func (c *Catalog) createItem(w http.ResponseWriter, r *http.Request) error {
	u, err := currentUser(r)
	if err != nil {
		return err
	}
	in, err := readInput(r)
	if err != nil {
		return err
	}
	name, err := in.text("name", true, 200)
	if err != nil {
		return err
	}
	desc, err := in.text("description", false, 5000)
	if err != nil {
		return err
	}
	res, err := c.db.Exec(r.Context(), "INSERT INTO items (user_id, name, description) VALUES (?, ?, ?)", u.ID, name, desc)
	if err != nil {
		return err
	}
	id, err := res.LastInsertId()
	if err != nil {
		return err
	}
	if wantsHTML(r) {
		http.Redirect(w, r, fmt.Sprintf("/view/items/%d", id), http.StatusSeeOther)
		return nil
	}
	// The scope wrote, so this read goes to the primary (sticky).
	it, err := c.item(r.Context(), id)
	if err != nil {
		return err
	}
	w.Header().Set("Location", fmt.Sprintf("/items/%d", id))
	writeJSON(w, http.StatusCreated, it)
	return nil
}

// listItems is GET /items?limit=20&before=N: items newest first, a page at
// a time; "next" is the URL of the next page, absent on the last.
func (c *Catalog) listItems(w http.ResponseWriter, r *http.Request) error {
	if _, err := currentUser(r); err != nil {
		return err
	}
	limit, err := queryInt(r, "limit", 20, 1, 100)
	if err != nil {
		return err
	}
	before, err := queryInt(r, "before", maxID, 1, maxID)
	if err != nil {
		return err
	}
	items, err := c.items(r.Context(), before, limit)
	if err != nil {
		return err
	}
	page := map[string]any{"items": items}
	if int64(len(items)) == limit {
		page["next"] = fmt.Sprintf("/items?limit=%d&before=%d", limit, items[len(items)-1].ID)
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// items returns at most limit items with an ID below before, newest first.
func (c *Catalog) items(ctx context.Context, before, limit int64) ([]Item, error) {
	items := []Item{}
	err := c.db.Select(ctx, &items, "SELECT "+itemColumns+" WHERE i.id < ? ORDER BY i.id DESC LIMIT ?", before, limit)
	return items, err
}

// getItem is GET /items/{id}: the item with its images.
func (c *Catalog) getItem(w http.ResponseWriter, r *http.Request) error {
	if _, err := currentUser(r); err != nil {
		return err
	}
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	it, err := c.item(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, it)
	return nil
}

// itemWithImages reads an item and its image rows in one query (one round
// trip to a replica, and one snapshot): a row per image row, or one row
// whose image columns are NULL when it has none. The rows come unordered:
// ordering by a column of the joined table makes MariaDB sort them
// through a temporary table on every request, so item sorts the few rows
// itself.
const itemWithImages = `SELECT i.id, i.user_id, u.name AS owner, i.name, i.description, i.created_at,
	m.id AS image_id, m.name AS image_name, m.size AS image_size, m.version AS image_version,
	m.object_name AS image_object, m.width AS image_width, m.height AS image_height,
	m.content_type AS image_type, m.error AS image_error
	FROM items i JOIN users u ON u.id = i.user_id LEFT JOIN item_images m ON m.item_id = i.id
	WHERE i.id = ?`

// itemImageRow is one row of itemWithImages.
type itemImageRow struct {
	Item
	ImageID     *int64  `db:"image_id"`
	ImageName   *string `db:"image_name"`
	Size        *int    `db:"image_size"`
	Version     *string `db:"image_version"`
	ObjectName  *string `db:"image_object"`
	Width       *int    `db:"image_width"`
	Height      *int    `db:"image_height"`
	ContentType *string `db:"image_type"`
	Error       *string `db:"image_error"`
}

// item returns the item with its images, or a 404.
func (c *Catalog) item(ctx context.Context, id int64) (*Item, error) {
	var rows []itemImageRow
	if err := c.db.Select(ctx, &rows, itemWithImages, id); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fail(http.StatusNotFound, "item %d does not exist", id)
	}
	slices.SortFunc(rows, func(a, b itemImageRow) int { return cmp.Compare(deref(a.ImageID), deref(b.ImageID)) })
	var images []imageRow
	for _, r := range rows {
		if r.ImageName != nil {
			images = append(images, imageRow{Name: *r.ImageName, Size: deref(r.Size), Version: deref(r.Version),
				ObjectName: deref(r.ObjectName), Width: deref(r.Width), Height: deref(r.Height),
				ContentType: deref(r.ContentType), Error: deref(r.Error)})
		}
	}
	it := rows[0].Item
	it.Images = imagesOf(id, images)
	return &it, nil
}

// deref is *p, or the zero value when p is nil (a NULL column).
func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
