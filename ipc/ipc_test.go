// SPDX-License-Identifier: GPL-2.0-or-later

package ipc

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRoundTrip(t *testing.T) {
	sup, childFile, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	child, err := FromFile(childFile)
	childFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	mfd, err := unix.MemfdCreate("handover", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	memfd := os.NewFile(uintptr(mfd), "handover")
	memfd.WriteString("state")
	defer memfd.Close()

	sent := Message{Kind: AuthVerify, Response: []byte{0, 1, 0xff}, ClientSalt: []byte("salt")}
	if err := child.Send(sent, memfd); err != nil {
		t.Fatal(err)
	}
	got, file, peer, err := sup.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != AuthVerify || string(got.Response) != "\x00\x01\xff" || string(got.ClientSalt) != "salt" {
		t.Fatalf("got %+v", got)
	}
	if !peer.Known || int(peer.Pid) != os.Getpid() || int(peer.UID) != os.Getuid() {
		t.Fatalf("credentials %+v, want pid %d uid %d", peer, os.Getpid(), os.Getuid())
	}
	if file == nil {
		t.Fatal("no file attached")
	}
	defer file.Close()
	b, _ := io.ReadAll(io.NewSectionReader(file, 0, 100))
	if string(b) != "state" {
		t.Fatalf("attached file holds %q", b)
	}

	if err := sup.Send(Message{Kind: Denied, Reason: "authentication failed"}, nil); err != nil {
		t.Fatal(err)
	}
	reply, _, _, err := child.Recv()
	if err != nil || reply.Kind != Denied || reply.Reason != "authentication failed" {
		t.Fatalf("reply %+v %v", reply, err)
	}

	child.Close()
	if _, _, _, err := sup.Recv(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after the child closed: %v", err)
	}
}

func TestRefusesOversized(t *testing.T) {
	sup, childFile, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	defer childFile.Close()
	big := []byte(`{"kind":"auth-begin","username":"` + strings.Repeat("a", MaxMessage) + `"}`)
	if _, err := unix.Write(int(childFile.Fd()), big); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := sup.Recv(); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("oversized message: %v", err)
	}
	child, _ := FromFile(childFile)
	if err := child.Send(Message{Kind: AuthBegin, Username: strings.Repeat("a", MaxMessage)}, nil); err == nil {
		t.Fatal("sent an oversized message")
	}
	unix.Write(int(childFile.Fd()), []byte("not json"))
	if _, _, _, err := sup.Recv(); err == nil {
		t.Fatal("accepted a message that is not JSON")
	}
}

// The sessions-on-demand pair keeps the client's options (names to
// repeated values) and the deadline bounds a reply that never comes.
func TestStartSessionMessages(t *testing.T) {
	sup, childFile, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	child, err := FromFile(childFile)
	childFile.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	req := Message{Kind: StartSession, Mode: "start-desktop", Display: ":120",
		Options: map[string][]string{"start": {"xterm", "xclock -digital"}, "dpi": {"96"}}}
	if err := child.Send(req, nil); err != nil {
		t.Fatal(err)
	}
	got, _, _, err := sup.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != StartSession || got.Mode != "start-desktop" || got.Display != ":120" ||
		strings.Join(got.Options["start"], "|") != "xterm|xclock -digital" || got.Options["dpi"][0] != "96" {
		t.Fatalf("got %+v", got)
	}
	reply := Message{Kind: SessionStarted, Display: ":120", Unit: "xpra-proxy-session-1000-ab.service", Session: "4", Leader: 77, WaitMS: 90000}
	if err := sup.Send(reply, nil); err != nil {
		t.Fatal(err)
	}
	r, _, _, err := child.Recv()
	if err != nil || r.Kind != SessionStarted || r.Unit != reply.Unit || r.Session != "4" || r.Leader != 77 || r.WaitMS != 90000 {
		t.Fatalf("reply %+v %v", r, err)
	}
	if err := child.SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := child.Recv(); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv past the deadline: %v", err)
	}
}
