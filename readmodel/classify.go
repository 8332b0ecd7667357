package readmodel

// isPlainRead reports whether query may run on a replica: its first keyword
// is SELECT, WITH, SHOW, EXPLAIN, DESCRIBE, DESC, VALUES or TABLE, and no
// keyword of it (outside quotes and comments) is UPDATE, SHARE, LOCK,
// INSERT, DELETE or REPLACE — which catches SELECT ... FOR UPDATE, FOR
// SHARE, LOCK IN SHARE MODE and data-changing CTEs. When in doubt it says
// no, and the query goes to the primary, which is always correct. It does
// not allocate.
func isPlainRead(query string) bool {
	first := true
	for i := 0; i < len(query); {
		c := query[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			i = skipQuoted(query, i)
		case c == '#' || (c == '-' && i+1 < len(query) && query[i+1] == '-'):
			i = skipLine(query, i)
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			i = skipBlock(query, i)
		case isWordByte(c):
			j := i
			for j < len(query) && isWordByte(query[j]) {
				j++
			}
			w := query[i:j]
			if first {
				if !oneOfFold(w, "SELECT", "WITH", "SHOW", "EXPLAIN", "DESCRIBE", "DESC", "VALUES", "TABLE") {
					return false
				}
				first = false
			} else if isWriteKeyword(w) {
				return false
			}
			i = j
		default:
			i++
		}
	}
	return !first
}

// isWriteKeyword reports whether w is UPDATE, SHARE, LOCK, INSERT, DELETE
// or REPLACE, in any case; the length switch keeps the common case (any
// other word) to one comparison.
func isWriteKeyword(w string) bool {
	switch len(w) {
	case 4:
		return equalFoldUpper(w, "LOCK")
	case 5:
		return equalFoldUpper(w, "SHARE")
	case 6:
		return oneOfFold(w, "UPDATE", "INSERT", "DELETE")
	case 7:
		return equalFoldUpper(w, "REPLACE")
	}
	return false
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// skipQuoted returns the index after the quoted string, identifier or
// backslash-escaped character sequence starting at i.
func skipQuoted(s string, i int) int {
	q := s[i]
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case q:
			if i+1 < len(s) && s[i+1] == q { // doubled quote
				i++
				continue
			}
			return i + 1
		}
	}
	return len(s)
}

func skipLine(s string, i int) int {
	for i < len(s) && s[i] != '\n' {
		i++
	}
	return i
}

func skipBlock(s string, i int) int {
	for i += 2; i+1 < len(s); i++ {
		if s[i] == '*' && s[i+1] == '/' {
			return i + 2
		}
	}
	return len(s)
}

// oneOfFold reports whether w equals one of the upper-case ASCII words,
// ignoring case.
func oneOfFold(w string, words ...string) bool {
	for _, k := range words {
		if len(k) == len(w) && equalFoldUpper(w, k) {
			return true
		}
	}
	return false
}

func equalFoldUpper(w, upper string) bool {
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}
