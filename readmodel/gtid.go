package readmodel

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// gtid is one MariaDB global transaction ID, domain-server-sequence.
type gtid struct {
	domain, server uint32
	seq            uint64
}

// gtidSet is a MariaDB GTID position: at most one GTID per replication
// domain, sorted by domain. It is immutable once built.
type gtidSet []gtid

// maxGTIDs bounds the GTIDs of a position: one per replication domain,
// and a deployment has a few domains. A causal token comes from a job's
// header, which anyone who may publish a job writes: without a bound, a
// token of 70,000 domains took 24 s of CPU to read, on every delivery.
const maxGTIDs = 1024

// parseGTIDSet reads a position such as "0-1-42" or "0-1-42,1-3-7" (the form
// of @@last_gtid, @@gtid_binlog_pos and @@gtid_slave_pos). An empty string
// is the empty position. Several GTIDs of one domain keep the highest.
// More than maxGTIDs GTIDs is an error.
func parseGTIDSet(s string) (gtidSet, error) {
	if n := strings.Count(s, ",") + 1; n > maxGTIDs {
		return nil, fmt.Errorf("readmodel: a GTID position of %d GTIDs: at most %d are read", n, maxGTIDs)
	}
	var set gtidSet
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := strings.Split(part, "-")
		if len(f) != 3 {
			return nil, fmt.Errorf("readmodel: GTID %q: want domain-server-sequence", part)
		}
		d, err1 := strconv.ParseUint(f[0], 10, 32)
		sv, err2 := strconv.ParseUint(f[1], 10, 32)
		n, err3 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("readmodel: GTID %q: want three unsigned numbers", part)
		}
		set = set.with(gtid{domain: uint32(d), server: uint32(sv), seq: n})
	}
	return set, nil
}

// with returns s plus g (kept only if it is ahead in its domain), as a new set.
func (s gtidSet) with(g gtid) gtidSet {
	i := sort.Search(len(s), func(i int) bool { return s[i].domain >= g.domain })
	if i < len(s) && s[i].domain == g.domain {
		if s[i].seq >= g.seq {
			return s
		}
		out := append(gtidSet(nil), s...)
		out[i] = g
		return out
	}
	out := make(gtidSet, 0, len(s)+1)
	out = append(out, s[:i]...)
	out = append(out, g)
	return append(out, s[i:]...)
}

// merge is the position that has reached both s and o.
func (s gtidSet) merge(o gtidSet) gtidSet {
	switch {
	case len(o) == 0 || s.reached(o):
		return s
	case len(s) == 0 || o.reached(s):
		return o
	}
	out := s
	for _, g := range o {
		out = out.with(g)
	}
	return out
}

// reached reports whether position s includes every transaction of tok:
// in each of tok's domains, s has a sequence number at least as high. This
// is what MASTER_GTID_WAIT waits for; it relies on gtid_strict_mode, which
// deploy/mariadb turns on, for sequence numbers to only grow per domain.
func (s gtidSet) reached(tok gtidSet) bool {
	j := 0
	for _, t := range tok {
		for j < len(s) && s[j].domain < t.domain {
			j++
		}
		if j == len(s) || s[j].domain != t.domain || s[j].seq < t.seq {
			return false
		}
	}
	return true
}

// String is the MariaDB form, "0-1-42,1-3-7".
func (s gtidSet) String() string {
	var b strings.Builder
	for i, g := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d-%d-%d", g.domain, g.server, g.seq)
	}
	return b.String()
}
