package readmodel

import (
	"context"
	"sync"
	"sync/atomic"
)

// ctxKey keys the one routing value a context carries.
type ctxKey struct{}

// routing is what a context asks of the router. A new value is made for
// each change; the scope inside is shared by every context derived from the
// one Sticky returned.
type routing struct {
	scope   *scope
	token   gtidSet // from WithToken
	primary bool    // from UsePrimary
}

// scope is one request's record of its writes.
type scope struct {
	wrote atomic.Bool
	mu    sync.Mutex
	token gtidSet
}

func routingFrom(ctx context.Context) *routing {
	r, _ := ctx.Value(ctxKey{}).(*routing)
	return r
}

func withRouting(ctx context.Context, change func(*routing)) context.Context {
	var r routing
	if old := routingFrom(ctx); old != nil {
		r = *old
	}
	change(&r)
	return context.WithValue(ctx, ctxKey{}, &r)
}

// Sticky returns a context that is one request scope (call it once per
// request, e.g. in middleware): once anything in the scope has written
// through the DB, later reads in the scope go to the primary, so a request
// reads its own writes (unless Config.NoSticky). The scope also collects
// the causal token that Token returns. Calling Sticky on a context that is
// already in a scope returns it unchanged.
func Sticky(ctx context.Context) context.Context {
	if r := routingFrom(ctx); r != nil && r.scope != nil {
		return ctx
	}
	return withRouting(ctx, func(r *routing) { r.scope = &scope{} })
}

// UsePrimary returns a context whose reads all go to the primary: for a read
// that must see the latest committed data, whatever the replicas' state.
func UsePrimary(ctx context.Context) context.Context {
	return withRouting(ctx, func(r *routing) { r.primary = true })
}

// Token returns the causal-consistency token of ctx: the MariaDB GTID
// position that covers the writes made in ctx's Sticky scope and the token
// the request came with (WithToken). Keep it in the user's session after each
// request and give it back with WithToken on the next one, on any node: its
// reads then see those writes. It is "" when there is nothing to wait for,
// with SQLite, with MySQL (see the package documentation), and for writes
// made outside a Sticky scope.
func Token(ctx context.Context) string {
	r := routingFrom(ctx)
	if r == nil {
		return ""
	}
	return r.causalToken().String()
}

// WithToken returns a context whose reads see at least the writes that tok
// (from Token) covers: they go to a replica that has applied them, waiting
// up to Config.CausalWait for one to catch up, else to the primary. An empty
// or malformed token is ignored (the reads are then ordinary reads).
func WithToken(ctx context.Context, tok string) context.Context {
	set, err := parseGTIDSet(tok)
	if err != nil || len(set) == 0 {
		return ctx
	}
	return withRouting(ctx, func(r *routing) { r.token = r.token.merge(set) })
}

// causalToken is the position reads in this context must see.
func (r *routing) causalToken() gtidSet {
	if r.scope == nil {
		return r.token
	}
	r.scope.mu.Lock()
	defer r.scope.mu.Unlock()
	return r.token.merge(r.scope.token)
}

// recordWrite marks the scope as having written and adds the write's GTID.
func (s *scope) recordWrite(tok gtidSet) {
	s.wrote.Store(true)
	if len(tok) == 0 {
		return
	}
	s.mu.Lock()
	s.token = s.token.merge(tok)
	s.mu.Unlock()
}
