package deploy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const supervisorConf = "supervisor/jetfleet-worker.conf"

// supervisorLoader loads a supervisord.conf with Supervisor's own parser
// (supervisor.options.ServerOptions, which supervisord runs at start) and
// prints each process it would run as JSON. The user the program runs as
// (jetfleet) need not exist on the test machine: that lookup alone is
// answered here.
const supervisorLoader = `
import json, sys
import supervisor.options as so
real = so.name_to_uid
so.name_to_uid = lambda name: 999 if name == "jetfleet" else real(name)
o = so.ServerOptions()
o.realize(args=["-c", sys.argv[1]])
out = []
for g in o.process_group_configs:
    for p in g.process_configs:
        out.append(dict(group=g.name, name=p.name, command=p.command,
            stopsignal=int(p.stopsignal), stopwaitsecs=p.stopwaitsecs,
            autorestart=getattr(p.autorestart, "__name__", str(p.autorestart)),
            autostart=p.autostart, uid=p.uid, directory=p.directory,
            stopasgroup=p.stopasgroup, killasgroup=p.killasgroup))
json.dump(out, sys.stdout)
`

// interpreter returns the interpreter of a script from its #! line.
func interpreter(t *testing.T, script string) string {
	t.Helper()
	f, err := os.Open(script)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	fields := strings.Fields(strings.TrimPrefix(line, "#!"))
	if !strings.HasPrefix(line, "#!") || len(fields) == 0 {
		t.Fatalf("%s has no #! line", script)
	}
	if filepath.Base(fields[0]) == "env" && len(fields) > 1 {
		return fields[1]
	}
	return fields[0]
}

// Supervisor's own parser loads jetfleet-worker.conf (included from a
// supervisord.conf, as /etc/supervisor/conf.d/*.conf is): numprocs
// processes named jetfleet-worker_00.., each the service's `work` (the
// catalog demo's binary, /usr/local/bin/catalog) exec'd by the shell that
// reads the environment file, stopped with TERM and given stopwaitsecs
// above --grace before KILL, restarted whatever their exit.
func TestSupervisorConfig(t *testing.T) {
	t.Parallel()
	supervisord := tool(t, "supervisord", "supervisor")
	abs, err := filepath.Abs(supervisorConf)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	main := filepath.Join(dir, "supervisord.conf")
	text := fmt.Sprintf("[supervisord]\nlogfile=%[1]s/supervisord.log\npidfile=%[1]s/supervisord.pid\n\n[include]\nfiles = %[2]s\n", dir, abs)
	if err := os.WriteFile(main, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, time.Minute, nil, interpreter(t, supervisord), "-c", supervisorLoader, main)
	if err != nil {
		t.Fatalf("Supervisor's parser on %s: %v\n%s", supervisorConf, err, out)
	}
	var procs []struct {
		Group, Name, Command, Autorestart, Directory string
		Stopsignal, Stopwaitsecs, UID                int
		Autostart, Stopasgroup, Killasgroup          bool
	}
	if err := json.Unmarshal([]byte(out), &procs); err != nil {
		t.Fatalf("parser output: %v\n%s", err, out)
	}
	if len(procs) < 2 {
		t.Fatalf("%d processes, want numprocs of 2 or more: %+v", len(procs), procs)
	}
	for i, p := range procs {
		where := fmt.Sprintf("%s process %d", supervisorConf, i)
		if want := fmt.Sprintf("jetfleet-worker_%02d", i); p.Name != want || p.Group != "jetfleet-worker" {
			t.Errorf("%s: named %s in group %s, want %s in jetfleet-worker", where, p.Name, p.Group, want)
		}
		if !strings.Contains(p.Command, "exec /usr/local/bin/catalog work ") || !strings.Contains(p.Command, ". /etc/jetfleet/jetfleet.env") {
			t.Errorf("%s: command %q, want the environment file read and catalog work exec'd", where, p.Command)
		}
		grace := flagDuration(t, where, p.Command, "grace")
		if p.Stopsignal != 15 || time.Duration(p.Stopwaitsecs)*time.Second <= grace {
			t.Errorf("%s: stop signal %d, stopwaitsecs %d; want TERM (15) and more than --grace %s", where, p.Stopsignal, p.Stopwaitsecs, grace)
		}
		if p.Autorestart != "RestartUnconditionally" || !p.Autostart || p.UID != 999 || !p.Stopasgroup || !p.Killasgroup {
			t.Errorf("%s: autorestart %s, autostart %v, user id %d, stop/kill as group %v/%v; want unconditional restart, autostart, user jetfleet, as group",
				where, p.Autorestart, p.Autostart, p.UID, p.Stopasgroup, p.Killasgroup)
		}
	}
}
