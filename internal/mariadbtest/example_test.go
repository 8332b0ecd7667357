package mariadbtest_test

import (
	"database/sql"
	"fmt"

	_ "github.com/go-sql-driver/mysql"

	"github.com/jetfleet/jetfleet/internal/mariadbtest"
)

// A test binary's shared pair: New in TestMain (Start(t) in a single test),
// Close at the end. The example prints only what goes wrong, so it passes
// silently where MariaDB is installed and where it is not.
func ExampleNew() {
	if mariadbtest.Available() != nil {
		return // tests skip: MariaDB is not installed
	}
	p, err := mariadbtest.New()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()
	for dsn, want := range map[string]int{p.PrimaryDSN("jetfleet"): 1, p.ReplicaDSN("jetfleet"): 2} {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			fmt.Println(err)
			return
		}
		var id int
		if err := db.QueryRow("SELECT @@server_id").Scan(&id); err != nil || id != want {
			fmt.Println("server_id", id, err, "want", want)
		}
		db.Close()
	}
	// Output:
}
