package bus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"

	_ "time/tzdata" // CRON_TZ= zones are checked alike on every machine
)

// JetStream's message-scheduler headers (ADR-51, nats-server 2.12+).
const (
	headerSchedule       = "Nats-Schedule"
	headerScheduleTarget = "Nats-Schedule-Target"
	headerRollup         = "Nats-Rollup"
	// headerScheduleTimeZone is the IANA zone a cron schedule runs in
	// (nats-server 2.14+); absent, it runs in UTC.
	headerScheduleTimeZone = "Nats-Schedule-Time-Zone"
)

// cronTZ prefixes a spec with the time zone its cron expression runs in,
// as robfig/cron (and so River's periodic jobs) spell it.
const cronTZ = "CRON_TZ="

// scheduleAt turns a job message into a one-shot schedule: the server stores
// it on schedules.delay.<queue>.<id> and, at t, publishes the job to its
// real subject. The scheduler strips Nats-Msg-Id from what it publishes, so
// the job ID also travels in Jetfleet-Job-Id.
func scheduleAt(msg *nats.Msg, queue, id string, t time.Time) {
	target := msg.Subject
	msg.Subject = wire.DelaySubject(queue, id)
	msg.Header.Set(HeaderJobID, id)
	msg.Header.Set(headerSchedule, "@at "+t.UTC().Format(time.RFC3339Nano))
	msg.Header.Set(headerScheduleTarget, target)
}

// Schedule is a periodic job registered with Dispatcher.Schedule.
type Schedule struct {
	// Name identifies the schedule; registering a name again replaces it.
	Name string
	// Spec is "@every 1m", a cron expression (5 or 6 fields, seconds
	// first when 6) or @hourly, @daily, @weekly, @monthly, @yearly, in
	// the server's form: a 5-field cron gains its seconds field ("0 */5 *
	// * * *"), a duration its full form ("@every 1h0m0s"). A cron
	// expression or shortcut that runs in a time zone other than UTC
	// starts with CRON_TZ=<zone> ("CRON_TZ=Europe/Berlin 0 0 9 * * *").
	Spec string
	// Queue and Kind say where each run is published.
	Queue, Kind string
	// Body is the job's JSON arguments.
	Body []byte
	// Header holds the job's settings headers (Jetfleet-Tries...).
	Header nats.Header
}

func scheduleSubject(name string) string { return SchedulePrefix + ".every." + name }

// Schedule registers a periodic job under name: JetStream's scheduler
// publishes it on spec's rhythm, with no leader or timer loop in any
// jetfleet process, and it survives restarts of all of them. Registering
// the same name again replaces the schedule (a rollup of its subject); it
// never doubles it. Registering it again unchanged writes nothing, so the
// next run stays where it was: registering every schedule at each start
// of a service is safe. Cron expressions and shortcuts run in UTC unless
// spec starts with a time zone, "CRON_TZ=Europe/Berlin 0 9 * * 1-5" (an
// IANA name; daylight saving time as that zone keeps it); @every ignores
// zones and refuses one. Each run is a job on jobs.<queue>.<kind> whose ID is
// its JOBS sequence (Inspector.Job and Cancel take it). Delay, At and
// Unique options are refused.
func (d *Dispatcher) Schedule(ctx context.Context, name, spec string, args Args, opts ...Option) error {
	if args == nil {
		return fmt.Errorf("%w: args are nil", ErrInvalid)
	}
	// Every run of a schedule is its own job: none carries the headers of
	// the context that registered it (Config.HeadersFromContext).
	msg, _, err := d.encode(context.Background(), args, opts)
	if err == nil {
		err = noUniqueSchedule(opts)
	}
	if err != nil {
		return err
	}
	return d.schedule(ctx, name, spec, msg)
}

// ScheduleJSON is Schedule for arguments that are already JSON.
func (d *Dispatcher) ScheduleJSON(ctx context.Context, name, spec, kind string, body []byte, opts ...Option) error {
	msg, _, err := d.build(context.Background(), kind, body, opts)
	if err == nil {
		err = noUniqueSchedule(opts)
	}
	if err != nil {
		return err
	}
	return d.schedule(ctx, name, spec, msg)
}

func (d *Dispatcher) schedule(ctx context.Context, name, spec string, msg *nats.Msg) error {
	if err := wire.ValidateName("schedule", name); err != nil {
		return err
	}
	if msg.Header.Get(headerSchedule) != "" {
		return fmt.Errorf("%w: a periodic job cannot also be delayed (Delay/At)", ErrInvalid)
	}
	pattern, zone, err := schedulePattern(spec)
	if err != nil {
		return err
	}
	target, err := periodicTarget(msg)
	if err != nil {
		return err
	}
	msg.Subject = scheduleSubject(name)
	msg.Header.Del(HeaderMsgID) // every run gets its own ID from its stream sequence
	msg.Header.Set(headerSchedule, pattern)
	msg.Header.Set(headerScheduleTarget, target)
	msg.Header.Set(headerRollup, "sub")
	if zone != "" {
		msg.Header.Set(headerScheduleTimeZone, zone)
	}
	d.ensureQueueOf(ctx, msg)
	if d.scheduledAlready(ctx, msg) {
		return nil
	}
	span := d.startSchedule(ctx, name, msg)
	err = refusedSpec(spec, d.publish(ctx, msg))
	endSpan(span, err)
	return err
}

// The JetStream API errors of a schedule pattern the server refuses
// ("message schedules pattern is invalid") and of a time zone it cannot
// load ("message schedules time zone is invalid": a server whose machine
// has no zone database; jetfleet's embedded server carries its own).
const (
	errCodeBadSchedule = 10189
	errCodeBadTimeZone = 10223
)

// refusedSpec turns the server's refusal of spec, which schedulePattern
// checks only in form (a field's values are the server's to judge), into
// an error wrapping ErrInvalid that names the spec; other errors pass.
func refusedSpec(spec string, err error) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return err
	}
	switch apiErr.ErrorCode {
	case errCodeBadSchedule:
		return fmt.Errorf("%w: schedule spec %q: the server refuses it (%s); nothing was stored: want @every <duration> (at least 1s), "+
			"@hourly, @daily, @weekly, @monthly, @yearly, or a cron expression of 5 fields (or 6, seconds first) whose values are in range, "+
			"optionally after CRON_TZ=<zone>", ErrInvalid, spec, apiErr.Description)
	case errCodeBadTimeZone:
		return fmt.Errorf("%w: schedule spec %q: the NATS server cannot use its time zone (%s); nothing was stored: "+
			"its machine lacks the IANA time zone database (install tzdata there)", ErrInvalid, spec, apiErr.Description)
	}
	return err
}

// scheduledAlready reports whether the schedule msg would write is
// registered already, unchanged: same spec, target, body and job headers.
// It is then not written again, since the server counts an "@every"
// schedule's next run from when its message was stored: a service that
// registers its schedules at every start, and starts more often than an
// interval, would otherwise never see a run. When the schedule cannot be
// read, it is written.
func (d *Dispatcher) scheduledAlready(ctx context.Context, msg *nats.Msg) bool {
	s, err := d.js.Stream(ctx, JobsStream)
	if err != nil {
		return false
	}
	m, err := s.GetLastMsgForSubject(ctx, msg.Subject)
	if err != nil || !bytes.Equal(m.Data, msg.Data) {
		return false
	}
	return maps.EqualFunc(scheduleHeaders(m.Header), scheduleHeaders(msg.Header), slices.Equal[[]string])
}

// scheduleHeaders is what of h makes a schedule: its spec and target and
// the job's own headers, without the other Nats-* headers and the trace
// context of the registering call.
func scheduleHeaders(h nats.Header) nats.Header {
	out := nats.Header{}
	for k, v := range h {
		switch {
		case k == headerSchedule, k == headerScheduleTarget, k == headerScheduleTimeZone:
		case strings.HasPrefix(k, "Nats-"), strings.EqualFold(k, "traceparent"), strings.EqualFold(k, "tracestate"):
			continue
		}
		out[k] = v
	}
	return out
}

// periodicTarget is where the scheduler publishes each run of the periodic
// job msg: jobs.<queue>.<kind>, without the ID token of msg's subject. A
// run carries no ID header, so its ID is its JOBS sequence, and a lookup
// or a cancel finds an ID-less job by that sequence; every run on one
// ID-token subject would instead share a subject no run's ID names.
func periodicTarget(msg *nats.Msg) (string, error) {
	queue, kind, err := wire.ParseJobSubject(msg.Subject)
	if err != nil {
		return "", fmt.Errorf("bus: periodic job: %w", err)
	}
	return wire.JobSubject(queue, kind), nil
}

// schedulePattern checks spec and returns the server's form of it (cron
// expressions of 5 fields get a leading seconds field of 0) and the time
// zone of its CRON_TZ= prefix ("" for none: UTC).
func schedulePattern(spec string) (pattern, zone string, err error) {
	spec = strings.TrimSpace(spec)
	bad := func(reason string) (string, string, error) {
		return "", "", fmt.Errorf("%w: schedule spec %q: %s", ErrInvalid, spec, reason)
	}
	if zone, rest, ok := strings.Cut(spec, " "); ok && strings.HasPrefix(zone, cronTZ) {
		zone = zone[len(cronTZ):]
		if err := checkZone(zone); err != nil {
			return bad(err.Error())
		}
		if strings.HasPrefix(strings.TrimSpace(rest), "@every ") {
			return bad("a time zone applies to cron expressions and @hourly … @yearly; @every runs the same in every zone")
		}
		pattern, err := cronPattern(spec, strings.TrimSpace(rest))
		return pattern, zone, err
	}
	if strings.HasPrefix(spec, cronTZ) {
		return bad("CRON_TZ=<zone> must be followed by a space and the cron expression")
	}
	pattern, err = cronPattern(spec, spec)
	return pattern, "", err
}

// checkZone checks that zone names an IANA time zone: not empty, not
// "Local" (each machine's own), and known to the zone database (embedded
// in this package, so a machine without one judges the same).
func checkZone(zone string) error {
	if zone == "" || zone == "Local" {
		return fmt.Errorf("CRON_TZ= needs an IANA time zone name such as Europe/Berlin, not %q", zone)
	}
	if _, err := time.LoadLocation(zone); err != nil {
		return fmt.Errorf("unknown time zone %q (want an IANA name such as Europe/Berlin or America/New_York)", zone)
	}
	return nil
}

// cronPattern checks expr, spec without its time zone, and returns the
// server's form of it; its errors name the whole spec.
func cronPattern(spec, expr string) (string, error) {
	bad := func(reason string) (string, error) {
		return "", fmt.Errorf("%w: schedule spec %q: %s", ErrInvalid, spec, reason)
	}
	switch {
	case expr == "":
		return "", fmt.Errorf("%w: schedule spec is empty", ErrInvalid)
	case strings.HasPrefix(expr, "@every "):
		d, err := time.ParseDuration(strings.TrimSpace(expr[len("@every "):]))
		if err != nil || d < time.Second {
			return bad("@every needs a duration of at least 1s, like @every 1m")
		}
		return "@every " + d.String(), nil
	case strings.HasPrefix(expr, "@"):
		switch expr {
		case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly":
			return expr, nil
		}
		return bad("unknown shortcut (use @every <duration>, @hourly, @daily, @weekly, @monthly or @yearly)")
	}
	switch n := len(strings.Fields(expr)); n {
	case 5:
		return "0 " + expr, nil
	case 6:
		return expr, nil
	case 1:
		return bad(`has 1 field; want "@every 1m", a shortcut like @hourly, or a cron expression of 5 fields (or 6 with seconds first)`)
	default:
		return bad(fmt.Sprintf(`has %d fields; want "@every 1m", a shortcut like @hourly, or a cron expression of 5 fields (or 6 with seconds first)`, n))
	}
}

// ValidateScheduleSpec checks the form of spec as Schedule does, before
// anything is sent: "@every D" with D at least 1s, a shortcut (@hourly,
// @daily, …) or a cron expression of 5 or 6 fields (the server judges the
// fields' values), the last two optionally after "CRON_TZ=<zone> " with
// zone a known IANA name. Its error wraps ErrInvalid and, after `schedule spec
// "<spec>": `, says what is wrong.
func ValidateScheduleSpec(spec string) error {
	_, _, err := schedulePattern(spec)
	return err
}

// Unschedule removes the periodic job name. Removing a name that does not
// exist is not an error.
func (d *Dispatcher) Unschedule(ctx context.Context, name string) error {
	s, err := d.js.Stream(ctx, JobsStream)
	if err != nil {
		return fmt.Errorf("bus: unschedule %s: %w", name, err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(scheduleSubject(name))); err != nil {
		return fmt.Errorf("bus: unschedule %s: %w", name, err)
	}
	return nil
}

// Schedules lists the registered periodic jobs.
func (d *Dispatcher) Schedules(ctx context.Context) ([]Schedule, error) {
	s, err := d.js.Stream(ctx, JobsStream)
	if err != nil {
		return nil, fmt.Errorf("bus: list schedules: %w", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(scheduleSubject(">")))
	if err != nil {
		return nil, fmt.Errorf("bus: list schedules: %w", err)
	}
	var out []Schedule
	for subject := range info.State.Subjects {
		m, err := s.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bus: schedule %s: %w", subject, err)
		}
		out = append(out, scheduleFromMsg(m))
	}
	return out, nil
}

func scheduleFromMsg(m *jetstream.RawStreamMsg) Schedule {
	sc := Schedule{
		Name:   strings.TrimPrefix(m.Subject, SchedulePrefix+".every."),
		Spec:   m.Header.Get(headerSchedule),
		Body:   m.Data,
		Header: nats.Header{},
	}
	if zone := m.Header.Get(headerScheduleTimeZone); zone != "" {
		sc.Spec = cronTZ + zone + " " + sc.Spec
	}
	sc.Queue, sc.Kind, _ = wire.ParseJobSubject(m.Header.Get(headerScheduleTarget))
	for _, h := range []string{HeaderTries, HeaderTimeout, HeaderBackoff} {
		if v := m.Header.Get(h); v != "" {
			sc.Header.Set(h, v)
		}
	}
	return sc
}
