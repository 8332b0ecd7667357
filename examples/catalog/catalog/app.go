package catalog

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog/migrations"
	"github.com/jetfleet/jetfleet/node"
	"github.com/jetfleet/jetfleet/workers"
)

// App is the catalog as a jetfleet service, for node.Main (the catalog's
// own binary) and `jetfleet up`: its routes, its jobs, its schema and its
// queues. Settings the node does not know come from the environment
// (ConfigFromEnv); cfg's non-zero fields win over them.
func App(cfg Config) node.App {
	var cat *Catalog
	return node.App{
		Name:       "catalog",
		Migrations: migrations.FS,
		Queues:     []string{ImagesQueue, "default", EmailsQueue},
		Init: func(ctx context.Context, s *node.Services) error {
			env, err := ConfigFromEnv(s.Getenv)
			if err != nil {
				return err
			}
			c := merge(cfg, env)
			if c.ImageReplicas == 0 {
				c.ImageReplicas = s.Bus.Replicas
			}
			c.Bus = s.Bus
			c.Logger = s.Logger.With().Str("component", "catalog").Logger()
			c.TracerProvider = s.TracerProvider
			c.Outbox = s.Outbox
			cat, err = New(ctx, s.JetStream, s.DB, c)
			return err
		},
		Routes: func(s *node.Services, mux *http.ServeMux) { cat.Routes(mux, s.Sessions) },
		Jobs:   func(_ *node.Services, w *workers.Worker) { cat.RegisterJobs(w) },
	}
}

// merge fills the zero fields of cfg from env.
func merge(cfg, env Config) Config {
	if cfg.ImageReplicas == 0 {
		cfg.ImageReplicas = env.ImageReplicas
	}
	if cfg.ImageStoreBytes == 0 {
		cfg.ImageStoreBytes = env.ImageStoreBytes
	}
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = env.MaxUploadBytes
	}
	if cfg.MaxFiles == 0 {
		cfg.MaxFiles = env.MaxFiles
	}
	if cfg.MaxUploadsInFlight == 0 {
		cfg.MaxUploadsInFlight = env.MaxUploadsInFlight
	}
	if cfg.ImageMemory == 0 {
		cfg.ImageMemory = env.ImageMemory
	}
	return cfg
}

// maxSetting bounds each of the catalog's settings: a size in MB of
// that many is far beyond any machine, and still fits an int64 in bytes.
const maxSetting = 1 << 30

// ConfigFromEnv reads the catalog's own settings: JETFLEET_IMAGE_REPLICAS
// (the image bucket's replicas when it is created; default the node's),
// JETFLEET_IMAGE_STORE_MB (the image bucket's bound,
// Config.ImageStoreBytes; default 1024), JETFLEET_MAX_UPLOAD_MB (default
// 32), JETFLEET_MAX_UPLOAD_FILES (default 10),
// JETFLEET_MAX_UPLOADS_IN_FLIGHT (default 8) and JETFLEET_IMAGE_MEMORY_MB
// (a worker's memory budget for image work, Config.ImageMemory; default
// 256). Unset settings stay zero.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var cfg Config
	var mb, memoryMB, storeMB int
	for _, s := range []struct {
		key string
		dst *int
	}{
		{"JETFLEET_IMAGE_REPLICAS", &cfg.ImageReplicas},
		{"JETFLEET_IMAGE_STORE_MB", &storeMB},
		{"JETFLEET_MAX_UPLOAD_MB", &mb},
		{"JETFLEET_MAX_UPLOAD_FILES", &cfg.MaxFiles},
		{"JETFLEET_MAX_UPLOADS_IN_FLIGHT", &cfg.MaxUploadsInFlight},
		{"JETFLEET_IMAGE_MEMORY_MB", &memoryMB},
	} {
		v := getenv(s.key)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxSetting {
			return Config{}, fmt.Errorf("catalog: %s=%q is not a whole number from 1 to %d", s.key, v, maxSetting)
		}
		*s.dst = n
	}
	cfg.MaxUploadBytes = int64(mb) << 20
	cfg.ImageMemory = int64(memoryMB) << 20
	cfg.ImageStoreBytes = int64(storeMB) << 20
	return cfg, nil
}
