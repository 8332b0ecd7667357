// Package migrations holds the reference app's database schema, one
// directory of numbered SQL files per dialect (sqlite, mysql), for
// readmodel.Migrate and `jetfleet migrate`.
package migrations

import "embed"

// FS holds sqlite/*.sql and mysql/*.sql.
//
//go:embed sqlite/*.sql mysql/*.sql
var FS embed.FS
