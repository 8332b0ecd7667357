package migrations_test

import (
	"fmt"
	"io/fs"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog/migrations"
)

// FS has one directory per dialect, for readmodel.Migrate.
func Example() {
	files, _ := fs.Glob(migrations.FS, "*/*.sql")
	fmt.Println(files)
	// Output: [mysql/0001_init.sql mysql/0002_image_errors.sql mysql/0003_image_versions.sql sqlite/0001_init.sql sqlite/0002_image_errors.sql sqlite/0003_image_versions.sql]
}
