// Package catalog is jetfleet's reference application: a catalog of items
// with images, built only on jetfleet's own packages. It is the code to read
// first to see how the parts fit together in a real web app:
//
//   - sessions: the login lives in a NATS KV bucket, so any node serves any
//     request (users.go);
//   - readmodel: writes go to the primary, reads to replicas, and the causal
//     token kept in the session makes a user's next request, on any node,
//     see their own writes even when the replicas lag (middleware.go);
//   - bus: the web node dispatches jobs (a welcome email on "emails", image
//     processing on "high") and answers at once (users.go, images.go);
//   - workers: the jobs' handlers, registered in any worker process of the
//     fleet (jobs.go, thumbnails.go);
//   - a NATS Object Store bucket holds the uploaded originals and the
//     thumbnails: no node keeps anything on its own disk.
//
// # Routes
//
//	POST /login                    {"name": "ann"}: logs in, creating the user on first login
//	POST /logout                   ends the session
//	GET  /me                       the user, their CSRF token and their outbox
//	POST /items                    {"name": "...", "description": "..."}
//	GET  /items?limit=20&before=N  newest first; "next" links to the next page
//	GET  /items/{id}               one item with its images and thumbnails
//	POST /items/{id}/images        multipart, field "images", several files: 202 with the job ID
//	GET  /items/{id}/images/{name}?size=160   streams an original (size 0) or a thumbnail
//	GET  /                         HTML: log in, create items
//	GET  /view/items/{id}          HTML: one item, upload images, watch thumbnails appear
//
// Request bodies are JSON (Content-Type: application/json) or HTML forms.
// Bad input gets a 4xx whose JSON body says what is wrong: {"error": "..."}.
// A browser (Accept: text/html) posting a form is redirected to the page
// instead of getting JSON.
//
// # CSRF
//
// Every unsafe request except POST /login must carry the session's CSRF
// token: in the X-CSRF-Token header (JSON clients get it from the login
// response or GET /me) or in the _token form field (the HTML forms carry
// it). An image upload checks the token itself, from the header or from a
// _token part that comes before the first file, so that no file is read
// before the request is known to be genuine. POST /login is
// exempt: it takes only a name, so a forged login gains an attacker nothing
// that typing the name would not; an application with real credentials
// should check the token there too.
//
// # Consistency
//
// Every request runs in a readmodel.Sticky scope restored with the causal
// token the session holds (readmodel.WithToken). When a request writes, the
// new token is put back in the session before the response goes out. Reads
// then go to a replica that has caught up with the user's writes, or to the
// primary after a short wait (readmodel.Config.CausalWait).
//
// # Jobs
//
// Handlers are idempotent, as at-least-once delivery requires: a welcome
// email is written to the outbox once per user, and processing an image again
// overwrites the same objects and rows.
package catalog
