package catalog

import (
	"context"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
	"github.com/jetfleet/jetfleet/workers"
)

// Queues the catalog dispatches to.
const (
	// ImagesQueue runs process-item-images: a user waits for the thumbnails.
	ImagesQueue = "high"
	// EmailsQueue runs send-welcome-email.
	EmailsQueue = "emails"
)

// Config holds the catalog's settings. Every zero value means the default
// written beside it.
type Config struct {
	// ImageBucket is the NATS Object Store bucket holding the originals and
	// the thumbnails; New creates it when missing. Default "item_images".
	ImageBucket string
	// ImageReplicas is the bucket's replica count when New creates it: 1 on
	// a single node, 3 in a three-node cluster. Default 1.
	ImageReplicas int
	// ImageStoreBytes bounds the image bucket, originals and thumbnails
	// together (JETFLEET_IMAGE_STORE_MB): anyone can log in and upload,
	// so without a bound uploads could fill the NATS server's storage that
	// the jobs share. A full bucket refuses new uploads with 507 and keeps
	// every image it holds; thumbnails that find no room fail their job,
	// which retries. The server reserves the bound from its storage when
	// New creates the bucket, and New gives an existing bucket this bound.
	// Default 1 GiB; negative for none.
	ImageStoreBytes int64
	// MaxUploadBytes caps one upload request (all its files). Default 32 MiB.
	MaxUploadBytes int64
	// MaxFiles caps the files of one upload request. Default 10.
	MaxFiles int
	// MaxUploadsInFlight caps the upload requests a web node reads at
	// once: each holds up to MaxUploadBytes in memory while it arrives,
	// so a node holds at most their product (256 MiB by default). One
	// more is refused at once with 503 and Retry-After. Default 8.
	MaxUploadsInFlight int
	// ImageMemory is the memory budget, in bytes, of a worker process's
	// image work, shared by all its image jobs: each one works out from
	// the file's header what decoding the image and making its thumbnails
	// will allocate (the decoded image at the bytes per pixel of its color
	// model, the decoder's and the scaler's buffers, the encoded
	// thumbnails), takes that from the budget before it allocates, and
	// waits while other jobs hold it. An image that needs more than the
	// whole budget fails for good with a reason giving its sizes. The rest
	// of the process (the Go runtime, connections, garbage not yet
	// collected) comes on top: see the package documentation. Default
	// 256 MiB.
	ImageMemory int64
	// ThumbnailWidths are the widths of the thumbnails made of each image,
	// in pixels; an image narrower than a width is not enlarged. Default
	// 160 and 640.
	ThumbnailWidths []int
	// Bus configures the dispatcher (the JOBS stream must exist).
	Bus bus.Config
	// Outbox, when set, carries each upload's processing job: the job is
	// written in the transaction that records the upload
	// (readmodel.Outbox), so an upload answered 202 is processed even when
	// NATS loses the dispatch's answer (the relay publishes it). Without
	// it, the job is dispatched after the commit, and a dispatch that
	// fails marks the images failed. App sets it to the node's.
	Outbox *readmodel.Outbox
	// Logger receives the errors the API answers with a 500, and the jobs'
	// progress. The zero value logs nothing.
	Logger zerolog.Logger
	// TracerProvider traces the Object Store calls (objtrace.go). Default
	// nil: none.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	if c.ImageBucket == "" {
		c.ImageBucket = "item_images"
	}
	if c.ImageReplicas == 0 {
		c.ImageReplicas = 1
	}
	if c.ImageStoreBytes == 0 {
		c.ImageStoreBytes = 1 << 30
	}
	if c.MaxUploadBytes == 0 {
		c.MaxUploadBytes = 32 << 20
	}
	if c.MaxFiles == 0 {
		c.MaxFiles = 10
	}
	if c.MaxUploadsInFlight == 0 {
		c.MaxUploadsInFlight = 8
	}
	if c.ImageMemory == 0 {
		c.ImageMemory = 256 << 20
	}
	if len(c.ThumbnailWidths) == 0 {
		c.ThumbnailWidths = []int{160, 640}
	}
	return c
}

// Catalog is the application: its HTTP routes for web nodes (Routes) and
// its job handlers for worker processes (RegisterJobs). It is safe for
// concurrent use and keeps no state of its own beyond its connections.
type Catalog struct {
	cfg    Config
	db     *readmodel.DB
	images jetstream.ObjectStore
	// imageStream is the stream behind images, whose deleted objects'
	// descriptions deleteObject purges.
	imageStream jetstream.Stream
	jobs        *bus.Dispatcher
	pages       *template.Template
	log         zerolog.Logger
	budget      *memoryBudget // of image work (thumbnails.go)
	// uploads holds a token per upload request being read
	// (Config.MaxUploadsInFlight).
	uploads chan struct{}
}

// New returns the catalog on db (migrated with the migrations package) and
// js, creating the image bucket when it does not exist.
func New(ctx context.Context, js jetstream.JetStream, db *readmodel.DB, cfg Config) (*Catalog, error) {
	cfg = cfg.withDefaults()
	if cfg.ImageMemory < 1<<20 {
		return nil, fmt.Errorf("catalog: ImageMemory: %d bytes is less than 1 MiB", cfg.ImageMemory)
	}
	for _, w := range cfg.ThumbnailWidths {
		if w < 1 || w > 4096 {
			return nil, fmt.Errorf("catalog: ThumbnailWidths: %d is not between 1 and 4096", w)
		}
	}
	images, err := imageBucket(ctx, js, cfg)
	if err != nil {
		return nil, err
	}
	d, err := bus.NewDispatcher(js, cfg.Bus)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	imageStream, err := js.Stream(ctx, "OBJ_"+cfg.ImageBucket)
	if err != nil {
		return nil, fmt.Errorf("catalog: object store %q: %w", cfg.ImageBucket, err)
	}
	images = traceObjects(images, cfg.ImageBucket, cfg.TracerProvider)
	return &Catalog{cfg: cfg, db: db, images: images, imageStream: imageStream, jobs: d, pages: pages, log: cfg.Logger, budget: newMemoryBudget(cfg.ImageMemory),
		uploads: make(chan struct{}, cfg.MaxUploadsInFlight)}, nil
}

// Limits of the request bodies other than uploads.
const formLimit = 64 << 10

// Routes registers the catalog's routes on mux, each in a causal-read
// scope (see the package documentation). Serve mux inside sm's session
// middleware, as package node does; sm also checks the CSRF tokens.
func (c *Catalog) Routes(mux *http.ServeMux, sm *sessions.Manager) {
	page := func(h handlerFunc) http.Handler { return web(formLimit, c.page(h)) }
	api := func(h handlerFunc) http.Handler { return web(formLimit, c.api(h)) }
	protected := func(h handlerFunc) http.Handler { return web(formLimit, sm.CSRF(c.api(h))) }

	mux.Handle("POST /login", api(c.login)) // no CSRF token: see the package documentation
	mux.Handle("POST /logout", protected(c.logout))
	mux.Handle("GET /me", api(c.me))
	mux.Handle("POST /items", protected(c.createItem))
	mux.Handle("GET /items", api(c.listItems))
	mux.Handle("GET /items/{id}", api(c.getItem))
	// The upload checks the CSRF token itself while it streams the files.
	mux.Handle("POST /items/{id}/images", web(c.cfg.MaxUploadBytes, c.api(c.uploadImages)))
	mux.Handle("GET /items/{id}/images/{name}", api(c.serveImage))
	mux.Handle("GET /{$}", page(c.homePage))
	mux.Handle("GET /view/items/{id}", page(c.itemPage))
}

// RegisterJobs registers the catalog's job handlers (send-welcome-email,
// process-item-images) on w, so the worker processes them, with
// process-item-images' dead-letter hook, which marks the images of a dead
// job failed.
func (c *Catalog) RegisterJobs(w *workers.Worker) {
	workers.Register(w, c.sendWelcomeEmail)
	workers.Register(w, c.processItemImages, workers.HandlerTimeout(5*time.Minute), workers.OnDeadLetter(c.imageJobDead))
}
