// SPDX-License-Identifier: GPL-2.0-or-later

package transport

import (
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DefaultWWW is where Debian's xpra package puts the HTML5 client.
const DefaultWWW = "/usr/share/xpra/www"

// DefaultLinkRoots are where Debian's HTML5 client links out to: its
// js/lib/jquery.js points into /usr/share/javascript (libjs-jquery).
var DefaultLinkRoots = []string{"/usr/share/javascript"}

// errNotFound covers every refusal to serve a path, so a response never
// tells a missing file from a forbidden one.
var errNotFound = errors.New("not found")

// fileRoot is a directory files may come from, opened as an os.Root so
// nothing below it can lead out of it.
type fileRoot struct {
	dir  string // absolute, symlinks resolved
	root *os.Root
}

// files serves regular files below www, following symlinks only where
// they end inside www or one of the link roots.
type files struct {
	www   string
	roots []fileRoot // www first
}

func openFiles(www string, linkRoots []string) (*files, error) {
	f := &files{}
	for i, dir := range append([]string{www}, linkRoots...) {
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			real, err = filepath.Abs(real)
		}
		if err != nil {
			if i > 0 && errors.Is(err, fs.ErrNotExist) {
				continue // a link root this system does not have
			}
			f.Close()
			return nil, fmt.Errorf("transport: www %s: %w", dir, err)
		}
		r, err := os.OpenRoot(real)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("transport: www: %w", err)
		}
		f.roots = append(f.roots, fileRoot{real, r})
	}
	f.www = f.roots[0].dir
	return f, nil
}

func (f *files) Close() {
	for _, r := range f.roots {
		r.root.Close()
	}
}

// cleanPath turns a URL path into a slash-separated name relative to the
// web root: "/" and every ".../" name their index.html; names with a
// segment starting with '.' (hidden files, and ".." before cleaning),
// NULs or backslashes are refused.
func cleanPath(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\\") {
		return "", false
	}
	if strings.HasSuffix(p, "/") {
		p += "index.html"
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if strings.HasPrefix(seg, ".") {
			return "", false
		}
	}
	name := path.Clean(p)[1:]
	if name == "" {
		return "", false
	}
	return name, true
}

// open opens the regular file name (from cleanPath) for reading.
func (f *files) open(name string) (*os.File, fs.FileInfo, error) {
	real, err := filepath.EvalSymlinks(filepath.Join(f.www, filepath.FromSlash(name)))
	if err != nil {
		return nil, nil, errNotFound
	}
	for _, r := range f.roots {
		rel, err := filepath.Rel(r.dir, real)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
			continue
		}
		// O_NONBLOCK: opening a FIFO planted in the tree must not hang us.
		file, err := r.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, nil, errNotFound
		}
		fi, err := file.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			file.Close()
			return nil, nil, errNotFound
		}
		return file, fi, nil
	}
	return nil, nil, errNotFound // a symlink leading out of every root
}

// contentTypes covers what the HTML5 client ships, so the answer does
// not depend on the host's /etc/mime.types.
var contentTypes = map[string]string{
	".html":  "text/html; charset=utf-8",
	".htm":   "text/html; charset=utf-8",
	".js":    "text/javascript; charset=utf-8",
	".mjs":   "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".json":  "application/json",
	".map":   "application/json",
	".txt":   "text/plain; charset=utf-8",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".svg":   "image/svg+xml",
	".jpg":   "image/jpeg",
	".jpeg":  "image/jpeg",
	".gif":   "image/gif",
	".webp":  "image/webp",
	".woff":  "font/woff",
	".woff2": "font/woff2",
	".ttf":   "font/ttf",
	".wasm":  "application/wasm",
}

func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := contentTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// accepts reports whether an Accept-Encoding value allows enc: listed
// by name with a q-value above zero ("*" is not honoured: a precompressed
// file is only worth sending to a client that names its encoding).
func accepts(header, enc string) bool {
	for part := range strings.SplitSeq(header, ",") {
		token, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(token), enc) {
			continue
		}
		for p := range strings.SplitSeq(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "q") {
				if q, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil || !(q > 0) {
					return false
				}
			}
		}
		return true
	}
	return false
}

// precompressed lists sibling suffixes by preference, with the
// Content-Encoding each one is served as.
var precompressed = []struct{ encoding, suffix string }{
	{"br", ".br"},
	{"gzip", ".gz"},
}
