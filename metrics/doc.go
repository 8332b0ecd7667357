// Package metrics exposes jetfleet's Prometheus metrics: jobs (dispatched,
// started, processed, retried, dead-lettered, run and wait time), queue
// gauges read from JetStream, sessions, the read model and HTTP. Every
// constructor registers its collectors on a *prometheus.Registry the caller
// owns (never the global default registry), and Handler serves it.
//
// Wiring, for a process that dispatches, runs workers and serves HTTP:
//
//	reg := metrics.NewRegistry()
//	jobs, _ := metrics.NewJobs(reg)
//	busCfg := bus.Config{OnDispatched: jobs.Dispatched}
//	wcfg := workers.Config{Middleware: []workers.Middleware{jobs.Middleware()}, OnOutcome: jobs.Outcome}
//	httpm, _ := metrics.NewHTTP(reg, metrics.HTTPConfig{Draining: health.Draining})
//	mux.Handle("GET /metrics", metrics.Handler(reg))
//	handler := httpm.Middleware(mux)
//
// The metrics, in base units, with no unbounded label (no job IDs, no raw
// paths: HTTP requests are labelled by their ServeMux pattern):
//
//	jetfleet_jobs_dispatched_total{queue,kind}        jobs stored by a Dispatcher
//	jetfleet_jobs_started_total{queue,kind}           attempts started by a worker
//	jetfleet_jobs_processed_total{queue,kind,outcome} attempts finished: outcome succeeded, failed or released
//	jetfleet_jobs_retried_total{queue,kind}           failed attempts handed back for a retry
//	jetfleet_jobs_dead_lettered_total{queue,kind}     jobs that failed for good (stored in DLQ)
//	jetfleet_jobs_handed_back_total{queue,kind}       jobs a drain gave back unfinished
//	jetfleet_jobs_released_total{queue,kind}          jobs stored again without using a try (Release, limits)
//	jetfleet_job_run_duration_seconds{queue,kind}     histogram of attempts' run time
//	jetfleet_job_wait_duration_seconds{queue,kind}    histogram of dispatch → first start
//	jetfleet_queue_ready_jobs{queue}                  and _in_flight_jobs, _scheduled_jobs,
//	                                                  _failed_jobs, _oldest_ready_age_seconds,
//	                                                  _paused, _workers (see QueueCollector)
//	jetfleet_queue_waiting_jobs{queue,kind}           jobs workers hold waiting for a fleet-wide limit
//	jetfleet_workers                                  live worker processes
//	jetfleet_queue_stats_success                      1 when the last read of the queue stats worked
//	jetfleet_session_loads_total                      and _saves_total, _conflicts_total, _store_errors_total
//	jetfleet_db_reads_total{target,reason}            reads by member role and routing reason
//	jetfleet_db_member_up{member,role}                and _in_pool; jetfleet_db_replica_lag_seconds{member}
//	jetfleet_http_requests_total{route,code}          requests by ServeMux pattern and status
//	jetfleet_http_request_duration_seconds{route}     histogram of request latency
//	jetfleet_http_requests_in_flight                  requests being served
//	jetfleet_http_draining                            1 while the node drains
//
// Sampler publishes each worker process's job counts to the
// JETFLEET_SAMPLES stream, from which ReadSamples and Throughput build the
// dashboard's fleet-wide throughput history (see samples.go).
package metrics
