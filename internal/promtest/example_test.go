package promtest_test

import (
	"fmt"
	"log"
	"strings"

	"github.com/jetfleet/jetfleet/internal/promtest"
)

// Parse an exposition and add up a counter's series by label.
func ExampleParse() {
	text := `# TYPE jetfleet_jobs_processed_total counter
jetfleet_jobs_processed_total{queue="default",kind="noop",outcome="succeeded"} 8
jetfleet_jobs_processed_total{queue="default",kind="fail",outcome="failed"} 2
`
	fams, err := promtest.Parse(strings.NewReader(text))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(fams.Sum("jetfleet_jobs_processed_total"))
	fmt.Println(fams.Sum("jetfleet_jobs_processed_total", "outcome", "failed"))
	fmt.Println(fams.Labels("jetfleet_jobs_processed_total", "kind"))
	// Output:
	// 10
	// 2
	// [fail noop]
}
