package client

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// An address where something else listens (here an HTTP server) is reported as not being a
// Tandem node, not as a frame of 1.3 GB.
func TestHandshakeWithSomethingElse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Read(make([]byte, 512))
				_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := New(ctx, Config{Addrs: []string{ln.Addr().String()}})
	if err == nil {
		c.Close()
		t.Fatal("client.New succeeded against an HTTP server")
	}
	if !strings.Contains(err.Error(), "does not answer as a Tandem node") {
		t.Fatalf("error %q does not say the address is not a Tandem node", err)
	}
}

// An address without a port fails at once instead of after the whole timeout.
func TestNewRefusesAnAddressWithoutPort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	for _, addr := range []string{"127.0.0.1", "localhost:", ""} {
		if _, err := New(ctx, Config{Addrs: []string{addr}}); err == nil || !strings.Contains(err.Error(), "is not HOST:PORT") {
			t.Errorf("%q: %v, want an error saying it is not HOST:PORT", addr, err)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
}

// A first address that accepts connections and never answers (a hung process, a black-holed
// route) does not hold client.New up for its dial timeout: the next address is dialed after a
// short stagger and New returns once that one answers.
func TestNewDoesNotWaitForAHungAddress(t *testing.T) {
	hung, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hung.Close()
	accepted := make(chan net.Conn, 16)
	defer func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()
	go func() {
		for {
			c, err := hung.Accept()
			if err != nil {
				return
			}
			accepted <- c // read nothing, answer nothing
		}
	}()
	fc := newFakeCluster(t, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	c, err := New(ctx, Config{Addrs: []string{hung.Addr().String(), fc.nodes[0].Addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("New took %v with the first address hung (dial timeout 5s)", d)
	}
	if _, err := c.Exec(ctx, "app", "x"); err != nil {
		t.Fatal(err)
	}
}
