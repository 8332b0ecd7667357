package catalog

import (
	"bytes"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"

	"github.com/jetfleet/jetfleet/sessions"
)

//go:embed templates/*.html
var templateFS embed.FS

// parsePages parses the HTML templates.
func parsePages() (*template.Template, error) {
	t, err := template.ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("catalog: templates: %w", err)
	}
	return t, nil
}

// pageData is what every page template gets.
type pageData struct {
	// Nonce is the page's Content-Security-Policy nonce, which its inline
	// style carries; render sets it.
	Nonce   string
	Title   string
	User    User
	CSRF    string
	Refresh bool // reload every 2 s (thumbnails on their way)
	Outbox  []OutboxMessage
	Items   []Item
	Item    *Item
	Own     bool
}

// homePage is GET /: the login form, or the user's items and a form to
// create one.
func (c *Catalog) homePage(w http.ResponseWriter, r *http.Request) error {
	d := pageData{Title: "Items"}
	if u, err := currentUser(r); err == nil {
		// Only a logged-in user gets a token: a visitor's GET stores no session.
		d.User, d.CSRF = u, sessions.CSRFToken(r.Context())
		if d.Outbox, err = c.outbox(r.Context(), u.Name); err != nil {
			return err
		}
		if d.Items, err = c.items(r.Context(), maxID, 50); err != nil {
			return err
		}
	} else {
		d.Title = "Log in"
	}
	return c.render(w, "home", d)
}

// itemPage is GET /view/items/{id}: one item, its images and, for its
// owner, the upload form. It reloads itself while images are processing.
func (c *Catalog) itemPage(w http.ResponseWriter, r *http.Request) error {
	u, err := currentUser(r)
	if err != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return nil
	}
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	it, err := c.item(r.Context(), id)
	if err != nil {
		return err
	}
	d := pageData{Title: it.Name, User: u, CSRF: sessions.CSRFToken(r.Context()), Item: it, Own: it.UserID == u.ID}
	for _, img := range it.Images {
		d.Refresh = d.Refresh || img.Status == "processing"
	}
	return c.render(w, "item", d)
}

// render executes a page template into a buffer first, so a template error
// is a clean 500 and not half a page. Each page gets a fresh nonce for its
// inline style, and a Content-Security-Policy that allows that style only.
func (c *Catalog) render(w http.ResponseWriter, name string, d pageData) error {
	d.Nonce = newNonce()
	var buf bytes.Buffer
	if err := c.pages.ExecuteTemplate(&buf, name, d); err != nil {
		return err
	}
	w.Header().Set("Content-Security-Policy", pagePolicy(d.Nonce))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, err := buf.WriteTo(w)
	return err
}

// newNonce returns a Content-Security-Policy nonce: 128 random bits.
func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}
