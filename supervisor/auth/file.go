// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"
	"time"
)

// fileModule is xpra's "file" module: the whole file is one password, and
// a client that answers the challenge with it may use the sessions of the
// system user it names.
type fileModule struct {
	src *watchedFile[[]byte]
}

func newFile(spec Spec, cfg Config) (Module, error) {
	name := spec.Options["filename"]
	if name == "" {
		name = cfg.PasswordFile
	}
	if name == "" {
		return nil, fmt.Errorf("auth: module file needs filename=PATH (or --password-file)")
	}
	// Checked now, so a missing or unsafe file stops start-up, and again
	// at each authentication, which re-reads it when it changed.
	owners := fileOwners(cfg)
	if err := checkSecretPath(name, owners); err != nil {
		return nil, fmt.Errorf("auth: module file: %w", err)
	}
	return &fileModule{src: newWatchedFile(name, owners, func(data []byte) []byte {
		// Editors and `echo` add a final newline that is not part of the
		// password; strip exactly one so a password may still end in spaces.
		data = bytes.TrimSuffix(data, []byte("\n"))
		return bytes.TrimSuffix(data, []byte("\r"))
	})}, nil
}

func (m *fileModule) Name() string         { return "file" }
func (m *fileModule) NeedsChallenge() bool { return true }

func (m *fileModule) Authenticate(r Request) (*Session, error) {
	if r.Verify == nil && r.Plain == nil {
		return nil, fmt.Errorf("%w: file: no challenge answered", ErrDenied)
	}
	password, err := m.src.get()
	if err != nil {
		return nil, fmt.Errorf("%w: file: %w", ErrDenied, err)
	}
	if len(password) == 0 {
		// An empty file is more likely a mistake than a wish for an empty
		// password; refuse rather than let anyone in.
		return nil, fmt.Errorf("%w: file: password file %s is empty", ErrDenied, m.src.path)
	}
	if !verifies(password)(r) {
		return nil, fmt.Errorf("%w: file: wrong password for user %q", ErrDenied, r.Username)
	}
	return UserSession(r.Username)
}

// watchedFile caches the parsed content of an admin-edited file and parses
// it again when the file changes, so edits apply without a restart (as in
// the reference, which compares the file's mtime).
type watchedFile[T any] struct {
	path   string
	owners []uint32 // who may own it (checkSecretFile)
	parse  func([]byte) T

	mu     sync.Mutex
	loaded bool
	mtime  time.Time
	size   int64 // also compared: an edit within the mtime granularity
	val    T
}

func newWatchedFile[T any](path string, owners []uint32, parse func([]byte) T) *watchedFile[T] {
	return &watchedFile[T]{path: path, owners: owners, parse: parse}
}

// get returns the parsed content, re-reading the file if its mtime or size
// changed. A file that has become unreadable is an error, never the stale
// cached content (removing the file must revoke access).
func (w *watchedFile[T]) get() (T, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var zero T
	f, err := os.Open(w.path)
	if err != nil {
		return zero, fmt.Errorf("reading %s: %w", w.path, err)
	}
	defer f.Close()
	// Stat before reading: a write racing the read then leaves a newer
	// mtime behind, which triggers another read next time.
	fi, err := f.Stat()
	if err != nil {
		return zero, fmt.Errorf("reading %s: %w", w.path, err)
	}
	if err := checkSecretFile(w.path, fi, w.owners); err != nil {
		return zero, err
	}
	if w.loaded && fi.ModTime().Equal(w.mtime) && fi.Size() == w.size {
		return w.val, nil
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return zero, fmt.Errorf("reading %s: %w", w.path, err)
	}
	w.val, w.mtime, w.size, w.loaded = w.parse(data), fi.ModTime(), fi.Size(), true
	return w.val, nil
}

// cloneSession copies s so callers may change what they get without
// touching the cached entry. Empty non-nil Displays stay non-nil.
func cloneSession(s Session) *Session {
	s.Displays = slices.Clone(s.Displays)
	s.Env = maps.Clone(s.Env)
	s.SessionOptions = maps.Clone(s.SessionOptions)
	return &s
}
