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
// email is written to the outbox once per user, and an image job that runs
// again finds its images done (or failed) and leaves them as they are.
//
// Every upload of an image is a version of its own: its own objects
// (items/<item>/<name>/<version>/<size>), its own row, and a job that names
// that version. A later upload of the same name replaces the row and
// deletes the earlier version's objects; the earlier job, if it still
// runs, finds its version gone and drops what it made. So an item shows,
// and GET serves, one upload at a time, with the type its worker found by
// decoding it.
//
// No image stays "processing": an image that can never be processed (not
// a JPEG or PNG, too large, damaged) is marked failed by the job, and a job
// that ends in the dead letters any other way (its tries used up, a
// timeout, a panic, a worker killed during its last attempt) has its
// images marked failed by its dead-letter hook (workers.OnDeadLetter),
// with the reason. A failed image keeps its row, to show why, but not its
// bytes: its objects are deleted, as are those of an upload refused while
// it was being received.
//
// The image bucket is bounded (Config.ImageStoreBytes,
// JETFLEET_IMAGE_STORE_MB, default 1 GiB), since anyone can log in and
// upload: a full bucket refuses further uploads with 507 Insufficient
// Storage and keeps every image it holds, and a thumbnail that finds no
// room fails its job, which retries.
//
// # Worker memory
//
// Image work in a worker process shares one memory budget
// (Config.ImageMemory, JETFLEET_IMAGE_MEMORY_MB, default 256 MiB). Before
// it decodes anything, a job works out from the file's header what
// decoding it and making its thumbnails will allocate: the decoded image
// at the bytes per pixel of its color model (16-bit RGBA: 8; CMYK JPEG: 8,
// with the planes it is converted from; progressive JPEG: 4 more per
// component for its coefficients; paletted PNG: 1; an interlaced PNG
// twice), the scaler's buffers and the encoded thumbnails. An image that
// needs more than the whole budget fails for good with a reason giving
// its pixels, the memory it would take and the budget; otherwise the job
// waits until the budget has room. The rest of the process comes on top:
// about 20 MiB idle, plus garbage the Go collector has not reclaimed yet
// (with a 64 MiB budget, peaks measured about 45 MiB above it). Give a
// worker's container room for both, and set GOMEMLIMIT under its limit so
// the collector runs before the kernel kills: in a 512 MiB container, the
// default 256 MiB budget with GOMEMLIMIT=400MiB.
package catalog
