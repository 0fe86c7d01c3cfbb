// SPDX-License-Identifier: GPL-2.0-or-later

package server

import (
	"fmt"
	"log/slog"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
	"github.com/xpra-proxy/xpra-proxy/encode/encproto"
	"github.com/xpra-proxy/xpra-proxy/encode/jpeg"
	"github.com/xpra-proxy/xpra-proxy/encode/nvenc"
	"github.com/xpra-proxy/xpra-proxy/encode/pool"
	"github.com/xpra-proxy/xpra-proxy/encode/x264"
)

// CheckGPU tells the pool to use the CPU only when NVML found GPUs but
// the NVENC driver cannot be loaded. Every front end of the pool calls
// it before serving (it is idempotent).
func CheckGPU(p *pool.Pool) {
	if p.NoGPU() == "" {
		if err := nvenc.Available(); err != nil {
			p.DisableGPUs(err.Error())
		}
	}
}

// Context is an encoder admitted by the pool for one uid: both the
// encproto server and the xpra encoder protocol (encode/xpraenc) open
// their contexts here, so admission and placement are the same whoever
// asks.
type Context struct {
	Enc     codec.Encoder
	Lease   *pool.Lease
	Backend encproto.Backend
	GPU     int8 // NVML index, -1 on the CPU
}

// Close frees the encoder and its pool slot.
func (x *Context) Close() {
	x.Enc.Close()
	x.Lease.Release()
}

// OpenContext admits a context of cfg (already validated) for uid and
// makes its encoder: NVENC on the GPU the pool chose, else x264 (with
// profile, "" for high) or JPEG. cpuOnly, or an H.264 profile other
// than high (the NVENC preset's), moves a GPU placement to the CPU. The
// error says why, with the code to send back (Refused: send without the
// pool; EncodeFailed: the backend would not open).
func OpenContext(p *pool.Pool, uid uint32, cfg codec.Config, profile string, cpuOnly bool, log *slog.Logger) (*Context, *encproto.Error) {
	lease, err := p.Admit(uid, cfg.Codec)
	if err != nil {
		return nil, errReply(encproto.Refused, "%s", refusal(err))
	}
	// The NVENC backend encodes its preset's profile (high); a client
	// that needs another (baseline for the HTML5 client's decoder) gets x264.
	if lease.Where == pool.GPU && (cpuOnly || profile != "" && profile != "high") {
		why := "client asked for the CPU"
		if !cpuOnly {
			why = "profile " + profile + " is served by x264"
		}
		if lease, err = p.ToCPU(lease, why); err != nil {
			return nil, errReply(encproto.Refused, "%s", refusal(err))
		}
	}
	if lease.Where == pool.GPU {
		e, err := nvenc.New(cfg, lease.Device.UUID)
		if err == nil {
			return &Context{Enc: e, Lease: lease, Backend: encproto.NVENC, GPU: int8(lease.Device.Index)}, nil
		}
		log.Warn("encoder: NVENC failed, using the CPU", "gpu", lease.Device.Index, "err", err)
		if lease, err = p.ToCPU(lease, err.Error()); err != nil {
			return nil, errReply(encproto.Refused, "%s", refusal(err))
		}
	}
	var enc codec.Encoder
	backend := encproto.X264
	switch cfg.Codec {
	case codec.JPEG:
		enc, err = jpeg.New(cfg)
		backend = encproto.JPEG
	default:
		enc, err = x264.New(cfg, profile)
	}
	if err != nil {
		lease.Release()
		return nil, &encproto.Error{Code: encproto.EncodeFailed, Message: fmt.Sprint(err)}
	}
	return &Context{Enc: enc, Lease: lease, Backend: backend, GPU: -1}, nil
}

// Config returns the limits in force, defaults filled in: another front
// end of the same pool (encode/xpraenc) applies the same ones.
func (s *Server) Config() Config { return s.cfg }
