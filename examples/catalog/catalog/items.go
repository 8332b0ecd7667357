package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
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

// item returns the item with its images, or a 404.
func (c *Catalog) item(ctx context.Context, id int64) (*Item, error) {
	var it Item
	err := c.db.Get(ctx, &it, "SELECT "+itemColumns+" WHERE i.id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fail(http.StatusNotFound, "item %d does not exist", id)
	}
	if err != nil {
		return nil, err
	}
	if it.Images, err = c.itemImages(ctx, id); err != nil {
		return nil, err
	}
	return &it, nil
}
