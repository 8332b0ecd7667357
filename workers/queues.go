package workers

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/jetfleet/jetfleet/bus"
)

type queue struct {
	name   string
	weight int
}

// parseQueues reads "high,default" (strict) or "high:6,default:3" (weighted).
func parseQueues(specs []string) (qs []queue, weighted bool, err error) {
	seen := map[string]bool{}
	for _, spec := range specs {
		name, w, hasWeight := strings.Cut(strings.TrimSpace(spec), ":")
		q := queue{name: name, weight: 1}
		if hasWeight {
			weighted = true
			if q.weight, err = strconv.Atoi(w); err != nil || q.weight < 1 {
				return nil, false, fmt.Errorf("workers: queue %q: weight %q is not an integer ≥ 1", spec, w)
			}
		}
		if err := bus.ValidateName("queue", name); err != nil {
			return nil, false, fmt.Errorf("workers: %w", err)
		}
		if seen[name] {
			return nil, false, fmt.Errorf("workers: queue %q is listed twice", name)
		}
		seen[name] = true
		qs = append(qs, q)
	}
	return qs, weighted, nil
}

// fetchOrder is the order in which queues are asked for jobs this round:
// the configured order in strict mode; in weighted mode a random order where
// each next queue is drawn with probability proportional to its weight.
func fetchOrder(qs []queue, weighted bool) []queue {
	if !weighted {
		return qs
	}
	rest := append([]queue(nil), qs...)
	out := make([]queue, 0, len(qs))
	for len(rest) > 0 {
		total := 0
		for _, q := range rest {
			total += q.weight
		}
		pick := rand.IntN(total)
		for i, q := range rest {
			if pick < q.weight {
				out = append(out, q)
				rest = append(rest[:i], rest[i+1:]...)
				break
			}
			pick -= q.weight
		}
	}
	return out
}

// weightedShares splits free places among qs by weight, summing to free:
// each queue gets free×weight/total rounded down, and each place left
// goes to a queue drawn in proportion to what rounding took from it
// (intn is rand.IntN). Over many fetches every queue gets its exact share,
// even when free is smaller than the number of queues. (A floor of one
// each would give three queues weighted 6:3:1 a third each whenever three
// places are free.)
func weightedShares(qs []queue, free int, intn func(int) int) []int {
	total := 0
	for _, q := range qs {
		total += q.weight
	}
	shares, rems := make([]int, len(qs)), make([]int, len(qs))
	left := free
	for i, q := range qs {
		shares[i], rems[i] = free*q.weight/total, free*q.weight%total
		left -= shares[i]
	}
	// The remainders add up to left×total.
	for range left {
		pick := intn(left * total)
		for i, r := range rems {
			if pick < r {
				shares[i]++
				break
			}
			pick -= r
		}
	}
	return shares
}
