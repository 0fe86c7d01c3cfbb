// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"testing"

	"github.com/xpra-proxy/xpra-proxy/encode/client"
	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/encode/internal/frametest"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
)

func stats(t *testing.T, r *raw) encproto.StatsReply {
	t.Helper()
	rep, err := r.do(encproto.StatsRequest{}, -1)
	if err != nil {
		t.Fatal(err)
	}
	st, ok := rep.(encproto.StatsReply)
	if !ok {
		t.Fatalf("stats: %#v", rep)
	}
	return st
}

// Real frames through the real server are counted by backend and
// result, and a Stats request reads them with the connections and
// contexts open now.
func TestStatsCount(t *testing.T) {
	f := start(t, Config{}, pool.Config{MaxCPU: 1}, nil)
	c := f.client(t)
	x, err := c.Open(encproto.Open{Codec: codec.JPEG, Format: codec.BGRX, Width: 64, Height: 48, Quality: 80})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Open(h264(64, 48))
	if err != nil {
		t.Fatal(err)
	}
	// The pool takes one video context: the second is refused.
	if _, err := c.Open(h264(64, 48)); !client.IsRefused(err) {
		t.Fatalf("second video context: %v", err)
	}
	frame, err := client.NewFrame(64 * 4 * 48)
	if err != nil {
		t.Fatal(err)
	}
	defer frame.Close()
	copy(frame.Bytes(), frametest.Pack(frametest.Synthetic(64, 48, 0), codec.BGRX, 64*4))
	for range 2 {
		if _, _, err := x.AppendCompress(nil, frame, 0, 64*4, client.FrameOptions{Quality: -1, Speed: -1}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if _, _, err := v.AppendCompress(nil, frame, 0, 64*4, client.FrameOptions{Quality: -1, Speed: -1}); err != nil {
			t.Fatal(err)
		}
	}
	// A stride too small for the width: rejected before the backend.
	if _, _, err := v.AppendCompress(nil, frame, 0, 16, client.FrameOptions{Quality: -1, Speed: -1}); err == nil {
		t.Fatal("a bad stride encoded")
	}

	r := dialRaw(t, f.path)
	st := stats(t, r)
	video := encproto.X264
	if v.Info.Backend == encproto.NVENC {
		video = encproto.NVENC
	}
	var want [encproto.NumBackends][encproto.NumResults]uint64
	want[encproto.JPEG][encproto.FrameOK] = 2
	want[video][encproto.FrameOK] = 3
	want[video][encproto.FrameRejected] = 1
	if st.Frames != want || st.OpensRefused != 1 || st.InFlight != 0 {
		t.Errorf("frames %v (want %v), opens refused %d (want 1), in flight %d", st.Frames, want, st.OpensRefused, st.InFlight)
	}
	// The client's connection (the bad stride broke it, and it may be
	// reconnecting) and this one; the contexts went with the broken one.
	if st.Conns < 1 || st.Conns > 2 || st.Start == 0 {
		t.Errorf("conns %d, start %d", st.Conns, st.Start)
	}
}

// A uid admitted by StatsUID alone gets Hello and Stats answered, and
// anything else refused with the connection closed; one in neither list
// is not admitted at all.
func TestStatsOnlyPeer(t *testing.T) {
	f := start(t, Config{AllowUID: func(uint32) bool { return false }, StatsUID: func(uint32) bool { return true }}, pool.Config{}, nil)
	r := dialRaw(t, f.path)
	if rep, err := r.do(encproto.Hello{Version: encproto.Version}, -1); err != nil {
		t.Fatal(err)
	} else if _, ok := rep.(encproto.HelloReply); !ok {
		t.Fatalf("hello: %#v", rep)
	}
	if st := stats(t, r); st.Conns != 1 {
		t.Errorf("conns %d, want 1 (this one)", st.Conns)
	}
	for _, req := range []encproto.Request{h264(64, 48), encproto.Close{Ctx: 1}, encproto.Status{}} {
		r := dialRaw(t, f.path)
		rep, err := r.do(req, -1)
		if e, ok := rep.(*encproto.Error); err != nil || !ok || e.Code != encproto.Refused {
			t.Fatalf("%T from a stats-only peer: %#v %v", req, rep, err)
		}
		// Closed: the next request finds a broken pipe or end of file.
		if _, err := r.do(encproto.StatsRequest{}, -1); err == nil {
			t.Errorf("%T: the connection stayed open: %v", req, err)
		}
	}

	g := start(t, Config{AllowUID: func(uint32) bool { return false }}, pool.Config{}, nil)
	if _, err := dialRaw(t, g.path).do(encproto.StatsRequest{}, -1); err == nil {
		t.Error("a uid in neither list was answered")
	}
}
