package readmodel

import (
	"context"
	"sync"

	"github.com/jmoiron/sqlx"
)

// maxCachedStmts bounds a member's statement cache: an application has a
// few dozen distinct read queries; one that builds queries on the fly (a
// new text per call) stops being cached past this many and runs unprepared.
const maxCachedStmts = 256

// stmtCache keeps one prepared statement per read query text, for SQLite,
// whose driver otherwise parses and plans every query again (a quarter of
// a simple read's CPU). database/sql prepares a statement on each pooled
// connection the first time it runs there and keeps it. MySQL reads do not
// use it: they interpolate their parameters and take one round trip
// unprepared, as many as a prepared execution.
type stmtCache struct {
	db *sqlx.DB

	mu    sync.RWMutex
	stmts map[string]*sqlx.Stmt
}

func newStmtCache(db *sqlx.DB) *stmtCache {
	return &stmtCache{db: db, stmts: map[string]*sqlx.Stmt{}}
}

// stmt returns the prepared statement for query, preparing it on first
// use; nil (run the query unprepared) when the cache is full or query does
// not prepare, so that the query's own error is reported by the run.
func (c *stmtCache) stmt(ctx context.Context, query string) *sqlx.Stmt {
	if c == nil {
		return nil
	}
	c.mu.RLock()
	st, ok := c.stmts[query]
	full := len(c.stmts) >= maxCachedStmts
	c.mu.RUnlock()
	if ok || full {
		return st
	}
	st, err := c.db.PreparexContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if have, ok := c.stmts[query]; ok { // prepared meanwhile by another read
		_ = st.Close()
		return have
	}
	if len(c.stmts) >= maxCachedStmts {
		_ = st.Close()
		return nil
	}
	c.stmts[query] = st
	return st
}

// close closes every cached statement.
func (c *stmtCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.stmts {
		_ = st.Close()
		delete(c.stmts, q)
	}
}
