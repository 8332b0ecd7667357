// Package sessions keeps HTTP sessions in a NATS JetStream KV bucket, so web
// nodes hold no session state and any node behind the balancer can serve
// any request (Laravel's SESSION_DRIVER=redis, done on NATS).
//
//	sm, err := sessions.New(js, sessions.Config{}) // bucket "sessions"
//	mux.Handle("/", sm.Middleware(sm.CSRF(app)))
//
//	sessions.Put(r.Context(), "user_id", 42)
//	id, ok := sessions.GetInt(r.Context(), "user_id")
//	sessions.RenewToken(r.Context()) // on login and privilege change
//	sessions.Destroy(r.Context())    // on logout
//
// # Tokens and storage
//
// A token is 256 bits from crypto/rand, base64url (43 characters). The KV
// key is the hex SHA-256 of the token, so `nats kv ls sessions` shows no
// usable token. Only tokens this package issued are accepted: an unknown,
// expired, malformed or forged cookie gets a fresh empty session with a new
// token (OWASP strict mode).
//
// # Timeouts
//
// Each record stores its idle deadline and its absolute deadline; every
// node enforces both when it loads a session. A request that changes
// nothing does not write: it refreshes the idle deadline only when
// Config.RefreshFraction (a tenth by default) of the idle window has passed
// since the last write, so a session ends after between 90% and 100% of
// the idle timeout without requests. The bucket's TTL (MaxAge) is the idle
// timeout: records of idle sessions vanish from the bucket by themselves,
// with no sweeper to run.
//
// The bucket is bounded (Config.MaxBytes, 256 MiB by default), since anyone
// who sends requests can make it hold sessions. Past the bound the server
// removes the sessions written least recently; their clients get a fresh
// session, as after the idle timeout.
//
// # Concurrent requests
//
// Saves use the KV revision (optimistic concurrency). When another request
// wrote the session since this one loaded it, the save reloads the session,
// replays this request's per-key changes (sets and removes) onto it and
// tries again. So:
//
//   - requests that change different keys all keep their changes;
//   - when two requests change the same key, the one that saves last wins
//     (the order in which their writes reach the bucket);
//   - Pop and the ageing of flash values remove only the value the request
//     read, never a newer one;
//   - Destroy wins: a request that loaded the session before a concurrent
//     Destroy and saves after it discards its changes (ErrSessionGone, to
//     Config.Logger) and never recreates the session. The same holds for
//     saves through the old token after RenewToken; a save to the old
//     token that lands before the renew completes is carried over.
//
// # Clusters, copies and the revision cookie
//
// Reads do not go to the stream leader. Each Manager keeps a copy of the
// bucket in memory, kept by a KV watch (Config.LocalCopy), and the bucket
// has direct gets on, so any replica answers a read. Either can be behind
// the bucket. A second cookie, Cookie.Name + "_rev", carries the revision
// of the session the client has seen (and its idle deadline); a load uses
// the node's copy, else a direct get, only when it holds that revision or
// a later one, and otherwise asks the stream leader, which has applied
// every write it acknowledged. A leader that answers older than the cookie
// (a deposed one, during a partition) is asked again until StoreTimeout
// rather than believed. So each client reads its own writes through any
// node and never reads an older session than it has seen, while most
// loads make no request to NATS. What a copy may miss for as long as it
// lags is a write the client has not seen: a concurrent request's, or one
// made with a copy of its cookie. Use Config.Replicas = 3 in a three-node
// cluster.
//
// # When NATS is down
//
// The middleware fails closed: a request whose session cannot be loaded or
// saved is answered by Config.ErrorHandler, 503 with Retry-After by
// default, and a request with no session cookie runs normally until it
// tries to save a session. Config.FailOpen serves such requests with an
// empty, unsaved session instead. Manager.Check reports the connection and
// bucket state for a /up endpoint.
//
// # Values
//
// Values round-trip with their exact type: string, bool, every int, uint,
// float and complex kind, []byte (nil stays nil), time.Time (instant, zone
// offset and zone abbreviation; a zone other than UTC comes back as a fixed
// zone, and the monotonic reading is dropped), time.Duration, and types
// registered with Register (stored as JSON). A session whose encoding
// exceeds the server's max_payload fails to save with ErrTooLarge and the
// stored session stays as it was.
//
// Session changes must happen before the response header is written: the
// session is saved then, so that the cookie can still be set. Later changes
// return ErrCommitted.
package sessions
