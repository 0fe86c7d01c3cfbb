// SPDX-License-Identifier: GPL-2.0-or-later

// Package launch is the document the supervisor gives a relay worker: the
// session its authentication granted. It travels in a memfd named
// "launch"; the worker reads it once at start-up.
package launch

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// MaxSize bounds the document (a few display URLs and options).
const MaxSize = 1 << 20

// Launch is what the relay worker needs beyond the client's hello.
type Launch struct {
	Username       string            `json:"username"` // the target user's login name
	UID            int               `json:"uid"`
	GID            int               `json:"gid"`
	Home           string            `json:"home"`
	Displays       []string          `json:"displays"` // nil: scan the socket dirs
	SessionOptions map[string]string `json:"session_options,omitempty"`
	SocketDirs     []string          `json:"socket_dirs,omitempty"`
	Listener       string            `json:"listener"`  // "tcp", "unix", ...
	Transport      string            `json:"transport"` // what arrived: "tcp", "ssl", "ws", "wss", "unix"
	Peer           string            `json:"peer"`      // client address, for logs
	Module         string            `json:"module"`    // the auth module that granted it
	// EncoderSocket is the shared encoder worker's socket ("": the relay
	// re-encodes nothing); EncoderUID is the uid that must serve it, so
	// no other local user can stand in for it and see the pixels.
	EncoderSocket string `json:"encoder_socket,omitempty"`
	EncoderUID    int    `json:"encoder_uid,omitempty"`
	// ServerHelloTimeout bounds connecting to the session and its hello
	// (server-hello-timeout); zero: the relay's default.
	ServerHelloTimeout time.Duration `json:"server_hello_timeout,omitempty"`
	// SetupStart is the connection's accept time (Unix ns) when the
	// supervisor logs at debug: a warm relay, exec'd before its
	// connection, logs its setup stages from it (others get
	// --setup-start). Zero: not logged.
	SetupStart int64 `json:"setup_start,omitempty"`
}

// Write stores l in a new sealed-size memfd ready to pass to a child.
func Write(l Launch) (*os.File, error) {
	b, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("launch: %w", err)
	}
	return Memfd("launch", b)
}

// Memfd returns a memfd holding data, positioned at its start.
func Memfd(name string, data []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd %s: %w", name, err)
	}
	// The reader gets exactly these bytes: no one can grow or rewrite them.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE|unix.F_SEAL_GROW|unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd %s: sealing: %w", name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd %s: %w", name, err)
	}
	return f, nil
}

// IsMemfd reports whether f is a memfd (only memfds have seals), so a
// descriptor another process passed along is what it claims to be.
func IsMemfd(f *os.File) bool {
	_, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	return err == nil
}

// ReadAll reads a passed memfd from its start, bounded by max. The
// buffer is sized from the file's size, so that a hand-over of a large
// hello (70 kB) takes one read, not a dozen growing ones.
func ReadAll(f *os.File, max int64) ([]byte, error) {
	size := int64(512)
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		size = min(fi.Size(), max) + 1 // +1: room to see the end, or a file over max
	}
	b := make([]byte, 0, size)
	r := io.LimitReader(io.NewSectionReader(f, 0, max+1), max+1)
	var err error
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)] // grows: the file was larger than it said
		}
		var n int
		n, err = r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err != nil {
			break
		}
	}
	if err == io.EOF {
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s exceeds %d bytes", f.Name(), max)
	}
	return b, nil
}

// Read decodes the launch document.
func Read(f *os.File) (Launch, error) {
	var l Launch
	b, err := ReadAll(f, MaxSize)
	if err != nil {
		return l, fmt.Errorf("launch: %w", err)
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("launch: %w", err)
	}
	return l, nil
}
