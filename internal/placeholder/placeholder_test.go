package placeholder_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/internal/placeholder"
)

func TestCheckSetting(t *testing.T) {
	for _, v := range []string{"change-me-app", " change-me", "change-me"} {
		err := placeholder.CheckSetting("NATS_PASSWORD", v)
		if err == nil || !strings.Contains(err.Error(), "NATS_PASSWORD is still the example's placeholder") || strings.Contains(err.Error(), v+" ") {
			t.Errorf("CheckSetting(%q) = %v; want an error naming the setting", v, err)
		}
	}
	for _, v := range []string{"", "s3cret-that-is-long", "please-change-me-later-not"} {
		if err := placeholder.CheckSetting("NATS_PASSWORD", v); err != nil {
			t.Errorf("CheckSetting(%q) = %v; want nil", v, err)
		}
	}
}

func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	shipped := write("shipped.conf", "# replace route-secret-change-me in all three files\ncluster {\n  routes: [\"nats://route:route-secret-change-me@nats-2:6222\"]\n}\n")
	if err := placeholder.CheckFile(shipped); err == nil || !strings.Contains(err.Error(), "shipped.conf line 3") {
		t.Errorf("CheckFile(shipped) = %v; want an error naming line 3", err)
	}
	edited := write("edited.conf", "# replace route-secret-change-me in all three files\ncluster {\n  routes: [\"nats://route:Zx81q@nats-2:6222\"]\n}\n")
	if err := placeholder.CheckFile(edited); err != nil {
		t.Errorf("CheckFile(edited) = %v; want nil (only a comment names the placeholder)", err)
	}
}

func ExampleCheckSetting() {
	fmt.Println(placeholder.CheckSetting("DB_PASSWORD", "change-me-db"))
	fmt.Println(placeholder.CheckSetting("DB_PASSWORD", "Vq3lCk1nT0m9eW2b"))
	// Output:
	// DB_PASSWORD is still the example's placeholder (change-me…): set a secret of your own, e.g. from `openssl rand -base64 24`
	// <nil>
}
