// SPDX-License-Identifier: GPL-2.0-or-later

package client

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Frame is a shared-memory buffer for pixels: a memfd sealed at its size
// (the worker refuses one that could shrink under its mapping) and
// mapped read-write here. Read the server's pixels straight into Bytes()
// and pass the Frame to AppendCompress: the pixels are never copied on
// their way to the encoder. Reuse one Frame per window; the worker keeps
// its mapping while the same Frame keeps coming.
type Frame struct {
	fd  int
	mem []byte
}

// NewFrame makes a frame buffer of size bytes (stride * height for one
// window, or more to hold several at different offsets).
func NewFrame(size int) (*Frame, error) {
	if size <= 0 || size > 1<<30 {
		return nil, fmt.Errorf("encoder client: frame of %d bytes", size)
	}
	fd, err := unix.MemfdCreate("xpra-proxy-frame", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("encoder client: memfd_create: %w", err)
	}
	fail := func(what string, err error) (*Frame, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("encoder client: %s: %w", what, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail("ftruncate", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		return fail("sealing", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mmap", err)
	}
	f := &Frame{fd: fd, mem: mem}
	runtime.SetFinalizer(f, (*Frame).Close)
	return f, nil
}

// Bytes is the shared memory; valid until Close.
func (f *Frame) Bytes() []byte { return f.mem }

// Close unmaps and closes the memfd; calling it again does nothing.
func (f *Frame) Close() {
	if f.fd >= 0 {
		unix.Munmap(f.mem)
		unix.Close(f.fd)
		f.fd, f.mem = -1, nil
	}
	runtime.SetFinalizer(f, nil)
}
