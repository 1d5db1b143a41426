package main

import (
	"strings"
	"unicode"
)

// splitStatements cuts a script into statements at semicolons outside quotes, comments and
// CREATE TRIGGER bodies (which end at "END;"), the way SQLite's shell does. Statements are
// returned trimmed and without the semicolon; empty ones are dropped.
func splitStatements(script string) []string {
	var out []string
	start := 0
	var words []string // upper-cased word tokens of the current statement
	flush := func(end int, force bool) bool {
		if !force && isTrigger(words) && (len(words) == 0 || words[len(words)-1] != "END") {
			return false // a semicolon inside a trigger body
		}
		if s := strings.TrimSpace(script[start:end]); s != "" && !onlyComments(s) {
			out = append(out, s)
		}
		words = words[:0]
		return true
	}
	for i := 0; i < len(script); {
		ch := script[i]
		switch {
		case ch == '\'' || ch == '"' || ch == '`':
			j := i + 1
			for j < len(script) {
				if script[j] == ch {
					if j+1 < len(script) && script[j+1] == ch { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			i = j + 1
		case ch == '[':
			j := strings.IndexByte(script[i:], ']')
			if j < 0 {
				i = len(script)
			} else {
				i += j + 1
			}
		case ch == '-' && i+1 < len(script) && script[i+1] == '-':
			j := strings.IndexByte(script[i:], '\n')
			if j < 0 {
				i = len(script)
			} else {
				i += j + 1
			}
		case ch == '/' && i+1 < len(script) && script[i+1] == '*':
			j := strings.Index(script[i+2:], "*/")
			if j < 0 {
				i = len(script)
			} else {
				i += j + 4
			}
		case ch == ';':
			if flush(i, false) {
				start = i + 1
			}
			i++
		case isWordByte(ch):
			j := i
			for j < len(script) && isWordByte(script[j]) {
				j++
			}
			words = append(words, strings.ToUpper(script[i:j]))
			i = j
		default:
			i++
		}
	}
	flush(len(script), true)
	return out
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= 0x80 || unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c))
}

func isTrigger(words []string) bool {
	if len(words) < 2 || words[0] != "CREATE" {
		return false
	}
	w := words[1]
	if (w == "TEMP" || w == "TEMPORARY") && len(words) > 2 {
		w = words[2]
	}
	return w == "TRIGGER"
}

// onlyComments reports whether s holds nothing but comments and white space.
func onlyComments(s string) bool {
	for len(s) > 0 {
		s = strings.TrimSpace(s)
		switch {
		case strings.HasPrefix(s, "--"):
			if j := strings.IndexByte(s, '\n'); j >= 0 {
				s = s[j+1:]
			} else {
				s = ""
			}
		case strings.HasPrefix(s, "/*"):
			if j := strings.Index(s, "*/"); j >= 0 {
				s = s[j+2:]
			} else {
				s = ""
			}
		case s == "":
		default:
			return false
		}
	}
	return true
}

// firstWords returns the first n upper-cased words of a statement, skipping comments.
func firstWords(stmt string, n int) []string {
	var out []string
	s := stmt
	for len(out) < n && len(s) > 0 {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
		switch {
		case strings.HasPrefix(s, "--"):
			if j := strings.IndexByte(s, '\n'); j >= 0 {
				s = s[j+1:]
			} else {
				s = ""
			}
			continue
		case strings.HasPrefix(s, "/*"):
			if j := strings.Index(s, "*/"); j >= 0 {
				s = s[j+2:]
			} else {
				s = ""
			}
			continue
		}
		j := 0
		for j < len(s) && isWordByte(s[j]) {
			j++
		}
		if j == 0 {
			break
		}
		out = append(out, strings.ToUpper(s[:j]))
		s = s[j:]
	}
	return out
}

// isRead reports whether a statement only reads, judged by its first keyword, so that the shell
// can send it as a query at the consistency asked for. Writes with RETURNING go as writes.
func isRead(stmt string) bool {
	w := firstWords(stmt, 1)
	if len(w) == 0 {
		return false
	}
	switch w[0] {
	case "SELECT", "VALUES", "EXPLAIN":
		return true
	case "PRAGMA":
		return !strings.Contains(stmt, "=")
	case "WITH":
		up := strings.ToUpper(stmt)
		for _, kw := range []string{"INSERT", "UPDATE", "DELETE", "REPLACE"} {
			if strings.Contains(up, kw) {
				return false
			}
		}
		return true
	}
	return false
}
