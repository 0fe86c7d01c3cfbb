// SPDX-License-Identifier: GPL-2.0-or-later

package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
)

// fileOwners are the uids that may own an auth file or database: root,
// the user the supervisor runs as (root, except by hand), and the admin
// user of Config.FileOwner.
func fileOwners(cfg Config) []uint32 {
	owners := []uint32{0, uint32(os.Geteuid())}
	if cfg.FileOwnerUID > 0 {
		owners = append(owners, uint32(cfg.FileOwnerUID))
	}
	return owners
}

// checkSecretFile is sshd's StrictModes for a file of passwords: a
// regular file owned by root (or the admin), neither group- nor
// world-writable (anyone who can write it can add a line mapping
// themselves onto another user's display) nor world-readable (it holds
// passwords), in a directory that only its owners can change, unless
// the directory is sticky. fi is what was opened (fstat), so the check
// and the read are of the same file.
func checkSecretFile(path string, fi os.FileInfo, owners []uint32) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s)", path, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information", path)
	}
	if !slices.Contains(owners, st.Uid) {
		return fmt.Errorf("%s is owned by uid %d: auth files must be owned by root (or auth-file-owner)", path, st.Uid)
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return fmt.Errorf("%s has mode %04o: auth files must not be writable by group or others nor readable by others (chmod 600)", path, perm)
	}
	dir := filepath.Dir(path)
	di, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory of %s: %w", path, err)
	}
	dst, ok := di.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information", dir)
	}
	if di.Mode()&os.ModeSticky == 0 && (di.Mode().Perm()&0o022 != 0 || !slices.Contains(owners, dst.Uid)) {
		return fmt.Errorf("directory %s (uid %d, mode %04o) lets others replace %s: it must be owned by root and writable only by its owner",
			dir, dst.Uid, di.Mode().Perm(), filepath.Base(path))
	}
	return nil
}

// checkSecretPath stats path (following a symlink, as the read will) and
// checks it; for the checks at start-up.
func checkSecretPath(path string, owners []uint32) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	return checkSecretFile(path, fi, owners)
}

// maxSecretFile bounds ReadSecret: a URI or a shared key, not a database.
const maxSecretFile = 64 << 10

// ReadSecret reads a small root-only file that holds a secret (the shared
// directory's URI with its password, a session host's shared key), with
// the same ownership and mode checks as password files, on the file it
// opened. Surrounding white space is removed.
func ReadSecret(path string, cfg Config) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := checkSecretFile(path, fi, fileOwners(cfg)); err != nil {
		return nil, err
	}
	b := make([]byte, maxSecretFile+1)
	n, err := io.ReadFull(f, b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if n > maxSecretFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a secret file", path, maxSecretFile)
	}
	return bytes.TrimSpace(b[:n]), nil
}
