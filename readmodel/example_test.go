package readmodel_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing/fstest"

	"github.com/jetfleet/jetfleet/readmodel"
)

// The zero Config is one SQLite file; the same calls route between a MariaDB
// primary and its replicas when DB_CONNECTION=mysql and DB_READ_HOST are set.
func Example() {
	dir, _ := os.MkdirTemp("", "readmodel-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()

	db, err := readmodel.Open(ctx, readmodel.Config{Database: filepath.Join(dir, "app.db")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	if _, err := db.Exec(ctx, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"); err != nil {
		fmt.Println(err)
		return
	}

	// One request: after its write, its reads go to the primary.
	req := readmodel.Sticky(ctx)
	if _, err := db.Exec(req, "INSERT INTO items (name) VALUES (?), (?)", "lamp", "chair"); err != nil {
		fmt.Println(err)
		return
	}
	var names []string
	if err := db.Select(req, &names, "SELECT name FROM items ORDER BY name"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(names)
	// Output: [chair lamp]
}

// Migrate applies the numbered files of the dialect's directory once.
func ExampleMigrate() {
	dir, _ := os.MkdirTemp("", "readmodel-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := readmodel.Open(ctx, readmodel.Config{Database: filepath.Join(dir, "app.db")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	fsys := fstest.MapFS{
		"sqlite/0001_init.sql":  {Data: []byte("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);")},
		"sqlite/0002_items.sql": {Data: []byte("CREATE TABLE items (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL);")},
		"mysql/0001_init.sql":   {Data: []byte("CREATE TABLE users (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(191) NOT NULL UNIQUE);")},
		"mysql/0002_items.sql":  {Data: []byte("CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, user_id BIGINT NOT NULL);")},
	}
	for range 2 {
		applied, err := readmodel.Migrate(ctx, db, fsys)
		fmt.Println(applied, err)
	}
	// Output:
	// [0001_init.sql 0002_items.sql] <nil>
	// [] <nil>
}

// Token and WithToken carry read-your-writes across requests and nodes: a
// read with the token goes to a replica that has applied the write, or to
// the primary. (With SQLite there is one database and the token is empty;
// on MariaDB it is the write's GTID position.)
func ExampleWithToken() {
	dir, _ := os.MkdirTemp("", "readmodel-example")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	db, err := readmodel.Open(ctx, readmodel.Config{Database: filepath.Join(dir, "app.db")})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	if _, err := db.Exec(ctx, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"); err != nil {
		fmt.Println(err)
		return
	}

	// Request 1 writes in its Sticky scope, then keeps the token, e.g. in
	// the user's session.
	req1 := readmodel.Sticky(ctx)
	if _, err := db.Exec(req1, "INSERT INTO items (name) VALUES (?)", "lamp"); err != nil {
		fmt.Println(err)
		return
	}
	tok := readmodel.Token(req1)

	// Request 2, on any node: its reads see request 1's write.
	req2 := readmodel.WithToken(ctx, tok)
	var name string
	if err := db.Get(req2, &name, "SELECT name FROM items WHERE id = 1"); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("token %q, read %s\n", tok, name)
	// Output: token "", read lamp
}
