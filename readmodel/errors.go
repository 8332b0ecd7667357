package readmodel

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/go-sql-driver/mysql"
)

// ErrReadOnly is returned (wrapped) for a write to a server that is
// read-only: the configured primary has @@read_only on (is DB_WRITE_HOST a
// replica?), or the server refused the write for that reason.
var ErrReadOnly = errors.New("readmodel: the primary is read-only")

// MySQL server error numbers the router tells apart.
const (
	erOptionPreventsStatement = 1290 // "running with the --read-only option"
	erReadOnlyMode            = 1836 // "Running in read-only mode"
	erServerShutdown          = 1053
	erConnectionKilled        = 1927
	erTooManyConnections      = 1040
)

// isConnError reports whether err means the server or the connection to it
// failed (as opposed to the statement): such a read is safe to try again on
// another member.
func isConnError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erServerShutdown, erConnectionKilled, erTooManyConnections:
			return true
		}
	}
	return false
}

// isReadOnlyError reports whether the server refused a write as read-only.
func isReadOnlyError(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == erOptionPreventsStatement || me.Number == erReadOnlyMode)
}

// wrapErr adds which member failed, keeping sql.ErrNoRows as it is (a
// result, not a failure) and marking read-only refusals with ErrReadOnly.
// IsFull reports whether err is a write the database refused for want of
// room: SQLite's "database or disk is full" (the file reached
// Config.SQLiteMaxBytes, or its disk is full), or MySQL's "table is full"
// (1114).
func IsFull(err error) bool {
	var coder interface{ Code() int }
	if errors.As(err, &coder) && coder.Code()&0xff == 13 { // SQLITE_FULL
		return true
	}
	var my *mysql.MySQLError
	return errors.As(err, &my) && my.Number == 1114
}

func wrapErr(m *member, err error) error {
	switch {
	case err == nil || err == sql.ErrNoRows:
		return err
	case isReadOnlyError(err):
		return fmt.Errorf("readmodel: write refused by %s %s, which is read-only (is it a replica?): %w: %w", m.role, m.addr, ErrReadOnly, err)
	}
	return fmt.Errorf("readmodel: %s %s: %w", m.role, m.addr, err)
}
