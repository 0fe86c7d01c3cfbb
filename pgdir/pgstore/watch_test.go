// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"context"
	"net"
	"testing"
	"time"
)

// A database down when the proxy starts shows as down without a login:
// Watch probes it at once.
func TestWatchAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connections are refused
	db, err := Local(Config{URI: "postgres://u:p@" + addr + "/d?sslmode=disable", Timeout: time.Second, Retry: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	changed := db.Changed()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go db.Watch(ctx)
	select {
	case <-changed:
	case <-time.After(30 * time.Second): // a hang guard: the probe's bound is 1 s
		t.Fatal("Watch did not probe the database at start")
	}
	if st := db.Status(); st.Up || st.Err == "" {
		t.Fatalf("status after the first probe: %+v", st)
	}
}
