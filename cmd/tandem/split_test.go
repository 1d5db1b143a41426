package main

import (
	"reflect"
	"testing"
)

func TestSplitStatements(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"SELECT 1; SELECT 2;", []string{"SELECT 1", "SELECT 2"}},
		{"SELECT 'a;b'; SELECT \"x;\"", []string{"SELECT 'a;b'", "SELECT \"x;\""}},
		{"-- c;\nSELECT 1 /* ; */;", []string{"-- c;\nSELECT 1 /* ; */"}},
		{"CREATE TRIGGER t AFTER INSERT ON x BEGIN INSERT INTO y VALUES (1); UPDATE z SET a=1; END; SELECT 1",
			[]string{"CREATE TRIGGER t AFTER INSERT ON x BEGIN INSERT INTO y VALUES (1); UPDATE z SET a=1; END", "SELECT 1"}},
		{"  ;; -- only a comment\n", nil},
		{"SELECT 'it''s;'", []string{"SELECT 'it''s;'"}},
	}
	for _, c := range cases {
		if got := splitStatements(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitStatements(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestIsRead(t *testing.T) {
	for stmt, want := range map[string]bool{
		"SELECT 1": true, " /* x */ select * from t": true, "PRAGMA table_info(t)": true,
		"PRAGMA user_version = 3": false, "INSERT INTO t VALUES (1)": false,
		"WITH a AS (SELECT 1) SELECT * FROM a": true, "WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a": false,
		"CREATE TABLE t(a)": false, "VALUES (1)": true,
	} {
		if got := isRead(stmt); got != want {
			t.Errorf("isRead(%q) = %v, want %v", stmt, got, want)
		}
	}
}
