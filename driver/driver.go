package driver

import (
	"context"
	"database/sql"
	sqldriver "database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemdb/tandem/client"
)

func init() {
	sql.Register("tandem", &Driver{})
}

// Driver is the "tandem" database/sql driver.
type Driver struct{}

var (
	_ sqldriver.Driver        = (*Driver)(nil)
	_ sqldriver.DriverContext = (*Driver)(nil)
	_ sqldriver.Connector     = (*Connector)(nil)
)

// Open opens one connection with its own client (closed with the connection). database/sql
// uses OpenConnector instead, which shares one client among all connections.
func (d *Driver) Open(dsn string) (sqldriver.Conn, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	cn, err := NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	c, err := cn.Connect(context.Background())
	if err != nil {
		return nil, err
	}
	c.(*conn).ownsConnector = true
	return c, nil
}

// OpenConnector parses dsn and returns a Connector.
func (d *Driver) OpenConnector(dsn string) (sqldriver.Connector, error) {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return NewConnector(cfg)
}

// Config configures a Connector.
type Config struct {
	Client      client.Config      // nodes, TLS, timeouts, logger
	DB          string             // database name
	Consistency client.Consistency // default consistency of queries
	PageSize    uint32             // rows per page (0: server default)
	Node        string             // node for stale reads ("" = first of Client.Addrs)
}

// ParseDSN parses tandem://host1:port,host2:port/dbname?param=value&...
func ParseDSN(dsn string) (Config, error) {
	var cfg Config
	rest, ok := strings.CutPrefix(dsn, "tandem://")
	if !ok {
		return cfg, fmt.Errorf("tandem: DSN %q does not start with tandem://", dsn)
	}
	rest, query, _ := strings.Cut(rest, "?")
	hosts, db, _ := strings.Cut(rest, "/")
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.Client.Addrs = append(cfg.Client.Addrs, h)
		}
	}
	if len(cfg.Client.Addrs) == 0 {
		return cfg, fmt.Errorf("tandem: DSN %q names no host", dsn)
	}
	db, err := url.PathUnescape(db)
	if err != nil {
		return cfg, fmt.Errorf("tandem: DSN database name: %w", err)
	}
	if db == "" || strings.Contains(db, "/") {
		return cfg, fmt.Errorf("tandem: DSN %q: want one database name after the hosts", dsn)
	}
	cfg.DB = db
	params, err := url.ParseQuery(query)
	if err != nil {
		return cfg, fmt.Errorf("tandem: DSN parameters: %w", err)
	}
	for k, vs := range params {
		v := vs[len(vs)-1]
		switch k {
		case "consistency":
			c, err := ParseConsistency(v)
			if err != nil {
				return cfg, err
			}
			cfg.Consistency = c
		case "timeout", "dial_timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return cfg, fmt.Errorf("tandem: DSN %s=%q: want a positive duration", k, v)
			}
			if k == "timeout" {
				cfg.Client.RequestTimeout = d
			} else {
				cfg.Client.DialTimeout = d
			}
		case "page_size":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return cfg, fmt.Errorf("tandem: DSN page_size=%q: %w", v, err)
			}
			cfg.PageSize = uint32(n)
		case "node":
			cfg.Node = v
		case "name":
			cfg.Client.Name = v
		default:
			return cfg, fmt.Errorf("tandem: unknown DSN parameter %q", k)
		}
	}
	return cfg, nil
}

// ParseConsistency parses "linearizable", "leader" or "stale".
func ParseConsistency(s string) (client.Consistency, error) {
	switch strings.ToLower(s) {
	case "linearizable", "":
		return client.Linearizable, nil
	case "leader":
		return client.LeaderLocal, nil
	case "stale":
		return client.Stale, nil
	}
	return 0, fmt.Errorf("tandem: unknown consistency %q (want linearizable, leader or stale)", s)
}

// Connector opens connections sharing one client.Client, created on first use. Closing it
// (sql.DB.Close does) closes the client.
type Connector struct {
	cfg Config

	mu     sync.Mutex
	cl     *client.Client
	closed bool
}

// NewConnector returns a Connector for cfg, for sql.OpenDB.
func NewConnector(cfg Config) (*Connector, error) {
	if len(cfg.Client.Addrs) == 0 {
		return nil, errors.New("tandem: no node addresses")
	}
	if cfg.DB == "" {
		return nil, errors.New("tandem: no database name")
	}
	if cfg.Client.RequestTimeout <= 0 {
		cfg.Client.RequestTimeout = 30 * time.Second
	}
	if cfg.Client.PageSize == 0 {
		// Also for the queries of transactions, which take the client's (a read-write
		// transaction's did not get the DSN's page_size; found by a QA pass).
		cfg.Client.PageSize = cfg.PageSize
	}
	return &Connector{cfg: cfg}, nil
}

// Client returns the shared client, connecting it on first use.
func (c *Connector) Client(ctx context.Context) (*client.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock() // first use only: later callers return at once
	if c.closed {
		return nil, errors.New("tandem: connector closed")
	}
	if c.cl != nil {
		return c.cl, nil
	}
	cl, err := client.New(ctx, c.cfg.Client)
	if err != nil {
		return nil, err
	}
	c.cl = cl
	return cl, nil
}

// Connect returns a new database/sql connection (no network I/O once the client exists).
func (c *Connector) Connect(ctx context.Context) (sqldriver.Conn, error) {
	cl, err := c.Client(ctx)
	if err != nil {
		return nil, err
	}
	return &conn{connector: c, cl: cl, cfg: &c.cfg}, nil
}

// Driver returns the tandem Driver.
func (c *Connector) Driver() sqldriver.Driver { return &Driver{} }

// Close closes the shared client.
func (c *Connector) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.cl != nil {
		cl := c.cl
		c.cl = nil
		return cl.Close()
	}
	return nil
}

// Closed reports whether Close was called (by its owner, or by sql.DB.Close).
func (c *Connector) Closed() bool { return c.isClosed() }

func (c *Connector) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

type ctxKey int

const (
	keyConsistency ctxKey = iota
	keyMinIndex
)

// WithConsistency returns a context whose queries use consistency c.
func WithConsistency(ctx context.Context, c client.Consistency) context.Context {
	return context.WithValue(ctx, keyConsistency, c)
}

// WithMinIndex returns a context whose queries wait until the node applied index (a
// client.Result.Index), for read-your-writes on followers. database/sql's Result does not
// carry the index: write through the client package to have it, or read at the default
// consistency (linearizable) or leader, which see every acknowledged write.
func WithMinIndex(ctx context.Context, index uint64) context.Context {
	return context.WithValue(ctx, keyMinIndex, index)
}
