// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// front accepts one connection on loopback, peeks at it and forwards it
// to addr, as the pre-auth process does for --tcp-proxy.
func front(t *testing.T, ctx context.Context, addr string) (string, <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer l.Close()
		nc, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		_, prefix, err := Peek(nc, MaxPeek, PeekTimeout)
		if err != nil {
			nc.Close()
			done <- err
			return
		}
		done <- Forward(ctx, nc, prefix, addr)
	}()
	return l.Addr().String(), done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Forward did not return")
	}
	return nil
}

// A real net/http server behind the forward, fetched by a real client.
func TestForwardHTTP(t *testing.T) {
	big := strings.Repeat("xpra-proxy ", 100000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %d\n%s", r.Method, r.URL.Path, len(body), big)
	}))
	defer srv.Close()
	addr, done := front(t, context.Background(), srv.Listener.Addr().String())
	tr := &http.Transport{MaxConnsPerHost: 1}
	client := &http.Client{Transport: tr}
	for _, path := range []string{"/a", "/b"} {
		resp, err := client.Post("http://"+addr+path, "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "POST " + path + " 7\n" + big; string(body) != want {
			t.Fatalf("got %d bytes: %.40q", len(body), body)
		}
	}
	tr.CloseIdleConnections()
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
}

// Half-close: the client ends its side, the target still answers, and
// its end reaches the client; Forward returns after both.
func TestForwardHalfClose(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	target := make(chan []byte, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got, _ := io.ReadAll(c) // until the client's half-close arrives
		target <- got
		fmt.Fprintf(c, "got %d bytes", len(got))
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	}()
	addr, done := front(t, context.Background(), l.Addr().String())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	payload := append([]byte("RFB 003.008\n"), bytes.Repeat([]byte{0xa5}, 1<<20)...)
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != fmt.Sprintf("got %d bytes", len(payload)) {
		t.Fatalf("reply %q, %v", reply, err)
	}
	if got := <-target; !bytes.Equal(got, payload) {
		t.Fatalf("target got %d bytes, want %d (prefix replayed?)", len(got), len(payload))
	}
	if err := wait(t, done); err != nil {
		t.Fatal(err)
	}
}

func TestForwardFailures(t *testing.T) {
	t.Run("target refuses", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := l.Addr().String()
		l.Close()
		addr, done := front(t, context.Background(), dead)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hello\n"))
		if err := wait(t, done); err == nil || !strings.Contains(err.Error(), "tcp-proxy") {
			t.Fatalf("err = %v", err)
		}
		// The client is closed, not left hanging.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Fatalf("client: %v", err)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err == nil {
				defer c.Close()
				io.Copy(io.Discard, c) // a target that never answers
			}
		}()
		ctx, cancel := context.WithCancel(context.Background())
		addr, done := front(t, ctx, l.Addr().String())
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("hello\n"))
		time.Sleep(100 * time.Millisecond)
		cancel()
		if err := wait(t, done); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("client resets", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err == nil {
				defer c.Close()
				io.Copy(c, c)
			}
		}()
		addr, done := front(t, context.Background(), l.Addr().String())
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("hello\n"))
		c.(*net.TCPConn).SetLinger(0)
		time.Sleep(50 * time.Millisecond)
		c.Close()     // RST
		wait(t, done) // returns, whatever it reports
	})
}
