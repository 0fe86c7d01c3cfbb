// SPDX-License-Identifier: GPL-2.0-or-later

package pgstore

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/pglab"
	"github.com/xpra-proxy/xpra-proxy/pgdir"
)

// TestServeRefuses: what the helper refuses of the supervisor's requests,
// answered as errors (not outages), and a frame over its bound, which
// ends the connection.
func TestServeRefuses(t *testing.T) {
	c := pglab.Start(t)
	ours, theirs := net.Pipe()
	defer ours.Close()
	served := make(chan error, 1)
	go func() { served <- Serve(context.Background(), theirs, slog.New(slog.DiscardHandler), nil) }()
	r := bufio.NewReader(ours)
	ours.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard
	send := func(v any) {
		t.Helper()
		if err := pgdir.WriteFrame(ours, v, pgdir.MaxRequest); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() pgdir.Reply {
		t.Helper()
		rep, err := pgdir.DecodeReply(r)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	open, _ := json.Marshal(pgdir.OpenArgs{URI: c.URI(), TimeoutMS: 2000, RetryMS: 1000, Name: "t"})
	send(pgdir.Request{Op: pgdir.OpOpen, Args: open})
	if rep := recv(); rep.Err != "" {
		t.Fatalf("open: %s", rep.Err)
	}
	long := strings.Repeat("a", 5000)
	tests := []struct {
		name string
		req  pgdir.Request
		want string
	}{
		{"unknown op", pgdir.Request{ID: 1, Op: "drop-tables"}, "unknown op"},
		{"arguments that do not parse", pgdir.Request{ID: 2, Op: pgdir.OpUserRows, Args: json.RawMessage(`{"username":5}`)}, "bad request"},
		{"a string over its bound", pgdir.Request{ID: 3, Op: pgdir.OpUserRows, Args: json.RawMessage(`{"username":"` + long + `"}`)}, "bad request"},
		{"a column that is not one", pgdir.Request{ID: 4, Op: pgdir.OpSetUser, Args: json.RawMessage(`{"username":"a","column":"password = 'x' --","value":"v"}`)}, "no such column"},
		{"no hosts to place on", pgdir.Request{ID: 5, Op: pgdir.OpPlace, Args: json.RawMessage(`{"user":"a","hosts":[]}`)}, "bad request"},
		{"a channel too long", pgdir.Request{ID: 6, Op: pgdir.OpListen, Args: json.RawMessage(`{"channel":"` + long[:64] + `"}`)}, "bad request"},
	}
	for _, tt := range tests {
		send(tt.req)
		rep := recv()
		if rep.ID != tt.req.ID || rep.Unavailable || !strings.Contains(rep.Err, tt.want) {
			t.Errorf("%s: reply %+v, want an error with %q", tt.name, rep, tt.want)
		}
	}
	// Still serving: a good request works.
	send(pgdir.Request{ID: 7, Op: pgdir.OpPing})
	if rep := recv(); rep.ID != 7 || rep.Err != "" {
		t.Fatalf("ping after refusals: %+v", rep)
	}
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], pgdir.MaxRequest+1)
	ours.Write(h[:])
	if err := <-served; !errors.Is(err, pgdir.ErrFrameTooLarge) {
		t.Fatalf("Serve after a frame over its bound: %v", err)
	}
}
