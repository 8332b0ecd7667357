package catalog

import (
	"reflect"
	"strings"
	"testing"
)

// TestEverySettingReachesTheCatalog: each setting ConfigFromEnv reads is
// carried into the catalog's Config by App (merge), when the program did
// not set the field itself.
func TestEverySettingReachesTheCatalog(t *testing.T) {
	env, err := ConfigFromEnv(func(k string) string {
		if strings.HasPrefix(k, "JETFLEET_") {
			return "3"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := merge(Config{}, env); !reflect.DeepEqual(got, env) {
		t.Errorf("merge lost settings:\n got %+v\nwant %+v", got, env)
	}
	own := Config{MaxUploadsInFlight: 5, MaxFiles: 2}
	if got := merge(own, env); got.MaxUploadsInFlight != 5 || got.MaxFiles != 2 || got.ImageMemory != env.ImageMemory {
		t.Errorf("a program's own settings must win over the environment: %+v", got)
	}
}

// TestSettingsOutOfRangeAreRefused: a setting too large to hold in bytes
// is refused with its name, as one below 1 is.
func TestSettingsOutOfRangeAreRefused(t *testing.T) {
	for _, v := range []string{"0", "-1", "x", "99999999999999"} {
		_, err := ConfigFromEnv(func(k string) string {
			if k == "JETFLEET_MAX_UPLOAD_MB" {
				return v
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), "JETFLEET_MAX_UPLOAD_MB") {
			t.Errorf("JETFLEET_MAX_UPLOAD_MB=%s: error %v, want one naming the setting", v, err)
		}
	}
}
