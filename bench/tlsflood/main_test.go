// SPDX-License-Identifier: GPL-2.0-or-later

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// TestDirectFlood runs the harness against its own fake server, without
// a proxy: the captured greeting is found, the client gets through the
// handshake, counts every draw and times the bytes after the first.
func TestDirectFlood(t *testing.T) {
	trace := filepath.Join("..", "..", defaultTrace())
	if _, err := os.Stat(trace); err != nil {
		testenv.Missing(t, "the 3.1.3 captures in ../shared/xpra/traces")
	}
	greeting, err := serverGreeting(trace)
	if err != nil {
		t.Fatal(err)
	}
	const draws, size = 20, 64 << 10
	o := options{fake: "127.0.0.1:0", draws: draws, size: size, pause: 10 * time.Millisecond}
	l, err := startFake(o, greeting)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	o.fake = l.Addr().String()
	r, err := flood(o, "direct")
	if err != nil {
		t.Fatal(err)
	}
	// Every draw after the first: an 8-byte header and the pixels, then
	// the draw packet's header and its rencoded body (at least 30 bytes).
	if lo, hi := int64(draws-1)*(8+size+8+30), int64(draws-1)*(8+size+8+100); r.bytes < lo || r.bytes > hi {
		t.Errorf("timed %d bytes, want %d..%d", r.bytes, lo, hi)
	}
	if r.elapsed <= 0 || r.cpu != nil {
		t.Errorf("elapsed %v, proxy CPU %v: want a duration and no proxy", r.elapsed, r.cpu)
	}
}
