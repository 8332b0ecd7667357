// Package bench measures jetfleet beside its peers on one machine: raw
// JetStream, Asynq and River for jobs, scs with Redis for sessions. It is a
// module of its own, so that the peers' dependencies never enter jetfleet's
// go.mod; jetfleet itself is the checkout one directory up (a replace
// directive).
package bench
