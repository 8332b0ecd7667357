// Package node turns a team's own HTTP routes and job handlers into a
// jetfleet service: its binary gets the subcommands, flags and environment
// names of jetfleet's own web node and worker.
//
//	func main() {
//		node.Main(node.App{
//			Name:   "shop",
//			Routes: func(s *node.Services, mux *http.ServeMux) { mux.Handle("POST /orders", orders(s)) },
//			Jobs:   func(s *node.Services, w *workers.Worker) { workers.Register(w, sendReceipt) },
//			Migrations: migrations.FS, // optional: gives the app s.DB and `shop migrate`
//		})
//	}
//
// Then `shop serve` runs a web node: the app's routes inside the session
// middleware (sessions in the NATS KV bucket of SESSION_*), /up, /livez and
// /readyz for the balancer with a graceful drain on SIGTERM (--drain-delay,
// --grace, --nats-down-after, --agent-listen), /metrics, and the dashboard
// at /jetfleet for holders of JETFLEET_DASHBOARD_* credentials. `shop work`
// runs a worker process of the app's jobs with every flag of `jetfleet
// work` (--queue high,default --tries 3 --concurrency 16 ...), and
// `shop migrate` applies the app's schema to the DB_* database. NATS comes
// from NATS_URL (with NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_CREDS,
// NATS_TLS_*), else from the nats.url that `jetfleet up` writes in the data
// directory, with the credentials it generated beside it (nats.auth). HTTP
// servers are bounded by JETFLEET_HTTP_* (HTTPLimits). No password or
// token is ever printed: URLs are shown through RedactURL. Logs are
// zerolog lines (LOG_LEVEL, LOG_FORMAT; LOG_FLUSH_INTERVAL, when set,
// batches their writes: NewProcessLogger).
//
// Unsafe requests to the app's routes may carry an Idempotency-Key: the
// first response is stored (sealed, per user, 24 h, in the NATS KV bucket
// jetfleet_idempotency) and a repeat gets it again instead of running the
// handler twice, so a client or the balancer can resend a request whose
// node died (Idempotency, JETFLEET_IDEMPOTENCY_*).
//
// Run the binary N times on M machines: web nodes hold no state (sessions
// are in NATS), workers share each queue's durable consumer.
//
// Open, Serve and Work are the same wiring for a program that runs the
// parts itself, as `jetfleet up` does (one process, both parts, one NATS
// connection), and RunCommand runs one subcommand beside commands of the
// program's own, with NewFlagSet, ParseFlags and SignalContext for them.
//
// The package links nats.go, never nats-server.
package node
