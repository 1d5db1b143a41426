// Package driver is a database/sql driver for Tandem, registered as "tandem".
//
//	db, err := sql.Open("tandem", "tandem://host1:9001,host2:9001/app?consistency=leader&timeout=5s")
//
// or, with TLS or any other client option:
//
//	connector, err := driver.NewConnector(driver.Config{Client: client.Config{Addrs: addrs, TLS: tlsCfg}, DB: "app"})
//	db := sql.OpenDB(connector)
//
// DSN parameters: consistency (linearizable, leader, stale; default linearizable), timeout
// (per-call budget when the context has none), dial_timeout, page_size (rows per page),
// node (the node stale reads go to), name (client name in the servers' logs).
//
// All database/sql connections of one connector (one *sql.DB) share one client.Client, so a
// pool of many connections still holds one TCP connection per node. Transactions are
// interactive (BEGIN ... COMMIT on the leader) and serializable; each holds its database's
// writer until it ends. Read-only ones (sql.TxOptions{ReadOnly: true}) hold no writer: their
// queries all read the snapshot of their start, at the connection's consistency (with
// consistency=stale, on the node stale reads go to, a follower too); writes in them fail.
// Queries stream their rows page by page (page_size rows at most), in transactions too: in a
// read-write one from the leader's writer, seeing the transaction's writes, and each page
// counts as activity for the transaction's idle timeout. Arguments may be nil, integers, float64,
// bool (stored as 0/1), string, []byte (a nil slice is NULL) and time.Time (stored as RFC 3339
// text in UTC with a nine-digit fraction, so that text order is time order); values of columns declared DATE, DATETIME or TIMESTAMP are read back as
// time.Time. WithConsistency and WithMinIndex set a query's consistency through its context.
package driver
