// SPDX-License-Identifier: GPL-2.0-or-later

// Package encproto is the typed request/reply protocol between session
// workers (clients) and the encoder worker, over a SOCK_STREAM unix
// socket. Every request has exactly one reply, in order:
//
//	Hello    {version}                      → HelloReply {version, codecs, max size, note}
//	Open     {codec, pixel format, w, h,    → Opened {ctx, backend, gpu, fallback reason}
//	          quality, speed, profile}        | Error{Refused: reason}  (send without the pool)
//	                                          | Error{Invalid}          (size, format, profile)
//	Compress {ctx, stride, offset,          → Compressed {keyframe, bitstream}
//	          keyframe, quality, speed}       | Error{BadFrame|NoContext|EncodeFailed}
//	          + memfd (SCM_RIGHTS)
//	Close    {ctx}                          → Closed {}
//	Status   {}                             → StatusReply {JSON: pool, contexts}
//	Stats    {}                             → StatsReply {fixed counters: frames by
//	                                          backend and result, connections,
//	                                          contexts, frames in flight}
//
// Stats is for monitoring (xpra-proxy-metrics): the worker answers it to
// every peer it admits, also to a peer admitted for stats only, which
// may send nothing else but Hello.
//
// Any request may get Error instead; Error{BadRequest} means the stream
// is broken and the server closes the connection after sending it.
//
// Frames travel in shared memory: the client passes a memfd sealed
// against shrinking (F_SEAL_SHRINK, so the server's mapping can never
// fault) holding the pixels at offset, rows stride bytes apart; the
// server maps it read-only and never copies it. The bitstream comes back
// in the reply body: it is a few percent of the frame, one copy through
// the socket costs microseconds, and the server never writes into a
// client's memory nor the client reads memory the server writes.
//
// Framing (little-endian), both directions:
//
//	0  2  magic "XE"
//	2  1  type
//	3  1  number of descriptors attached (0, or 1 on Compress)
//	4  4  sequence number, chosen by the client, echoed in the reply
//	8  4  body length (at most MaxRequestBody for requests, MaxReplyBody
//	      for replies)
//	12    body
//
// Bodies are fixed little-endian fields; strings are a u16 length and
// bytes. Descriptors received with a message belong to it; a count
// different from the header's, or any on a message that takes none, is
// a protocol error and every received descriptor is closed.
package encproto

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
)

// Version of this protocol.
const Version = 1

// HeaderSize is the fixed header length.
const HeaderSize = 12

// Limits on bodies.
const (
	// MaxRequestBody: requests are a few dozen bytes.
	MaxRequestBody = 1024
	// MaxReplyBody bounds a bitstream (an 8192x8192 worst-case keyframe
	// stays below it) and a status document.
	MaxReplyBody = 64 << 20
	// MaxString bounds any string field.
	MaxString = 1024
	// MaxProfile bounds the profile name.
	MaxProfile = 16
	// StatsSize is a StatsReply body's exact length: a reader needs no
	// larger budget.
	StatsSize = 8 + 3*4 + 8 + NumBackends*NumResults*8
)

// Type of a message.
type Type uint8

// Requests and replies.
const (
	THello    Type = 1
	TOpen     Type = 2
	TCompress Type = 3
	TClose    Type = 4
	TStatus   Type = 5
	TStats    Type = 6

	THelloReply  Type = 0x81
	TOpened      Type = 0x82
	TCompressed  Type = 0x83
	TClosed      Type = 0x84
	TStatusReply Type = 0x85
	TStatsReply  Type = 0x86
	TError       Type = 0xFF
)

var typeNames = map[Type]string{
	THello: "hello", TOpen: "open", TCompress: "compress", TClose: "close", TStatus: "status", TStats: "stats",
	THelloReply: "hello-reply", TOpened: "opened", TCompressed: "compressed", TClosed: "closed",
	TStatusReply: "status-reply", TStatsReply: "stats-reply", TError: "error",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	return fmt.Sprintf("type(%#x)", uint8(t))
}

// IsRequest reports whether t is a request type.
func (t Type) IsRequest() bool { return t >= THello && t <= TStats }

// Header is the fixed part of every message.
type Header struct {
	Type Type
	Fds  uint8
	Seq  uint32
	Len  uint32
}

// ErrProtocol marks malformed input: the connection cannot go on.
var ErrProtocol = errors.New("encoder protocol error")

func protoErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, a...))
}

// ParseHeader checks the magic, the descriptor count and the body length
// against the limit for its direction.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, protoErr("short header (%d bytes)", len(b))
	}
	if b[0] != 'X' || b[1] != 'E' {
		return Header{}, protoErr("bad magic %#x %#x", b[0], b[1])
	}
	h := Header{Type: Type(b[2]), Fds: b[3], Seq: binary.LittleEndian.Uint32(b[4:]), Len: binary.LittleEndian.Uint32(b[8:])}
	if _, ok := typeNames[h.Type]; !ok {
		return Header{}, protoErr("unknown message type %#x", b[2])
	}
	want := uint8(0)
	if h.Type == TCompress {
		want = 1
	}
	if h.Fds != want {
		return Header{}, protoErr("%v with %d descriptors", h.Type, h.Fds)
	}
	limit := uint32(MaxReplyBody)
	if h.Type.IsRequest() {
		limit = MaxRequestBody
	}
	if h.Len > limit {
		return Header{}, protoErr("%v body of %d bytes exceeds %d", h.Type, h.Len, limit)
	}
	return h, nil
}

// AppendHeader appends the encoded header.
func AppendHeader(b []byte, h Header) []byte {
	b = append(b, 'X', 'E', byte(h.Type), h.Fds)
	b = binary.LittleEndian.AppendUint32(b, h.Seq)
	return binary.LittleEndian.AppendUint32(b, h.Len)
}

// reader walks a body, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.err = protoErr("body too short")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if v := r.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (r *reader) str(limit int) string {
	n := int(r.u16())
	if r.err == nil && n > limit {
		r.err = protoErr("string of %d bytes exceeds %d", n, limit)
		return ""
	}
	return string(r.take(n))
}

// end fails if bytes are left over: every body has one exact layout.
func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = protoErr("%d trailing bytes", len(r.b))
	}
	return r.err
}

func appendStr(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// Hello opens the conversation.
type Hello struct{ Version uint16 }

// Open asks for a new context.
type Open struct {
	Codec   codec.Codec
	Format  codec.PixelFormat
	Width   uint16
	Height  uint16
	Quality uint8
	Speed   uint8
	// CPUOnly keeps the context off the GPUs (a client that only decodes
	// baseline H.264, which NVENC's presets may not give).
	CPUOnly bool
	// Profile for H.264: "", "baseline", "main", "high".
	Profile string
}

// Compress asks for one frame; the memfd travels with it.
type Compress struct {
	Ctx      uint32
	Stride   uint32
	Offset   uint64
	Keyframe bool
	// Quality and Speed change the context from this frame on; -1 keeps.
	Quality, Speed int8
}

// Close ends a context.
type Close struct{ Ctx uint32 }

// Status asks for the pool's figures.
type Status struct{}

// StatsRequest asks for the counters (StatsReply).
type StatsRequest struct{}

// Request is one of Hello, Open, Compress, Close, Status, StatsRequest.
type Request any

// ParseRequest decodes the body of a request whose header was h.
func ParseRequest(h Header, body []byte) (Request, error) {
	if !h.Type.IsRequest() {
		return nil, protoErr("%v is not a request", h.Type)
	}
	if len(body) != int(h.Len) {
		return nil, protoErr("body of %d bytes, header says %d", len(body), h.Len)
	}
	r := &reader{b: body}
	var req Request
	switch h.Type {
	case THello:
		req = Hello{Version: r.u16()}
	case TOpen:
		o := Open{Codec: codec.Codec(r.u8()), Format: codec.PixelFormat(r.u8()), Width: r.u16(), Height: r.u16(),
			Quality: r.u8(), Speed: r.u8()}
		flags := r.u8()
		o.CPUOnly = flags&1 != 0
		o.Profile = r.str(MaxProfile)
		if r.err == nil && flags&^1 != 0 {
			r.err = protoErr("unknown open flags %#x", flags)
		}
		req = o
	case TCompress:
		c := Compress{Ctx: r.u32(), Stride: r.u32(), Offset: r.u64()}
		flags := r.u8()
		c.Keyframe = flags&1 != 0
		c.Quality, c.Speed = int8(r.u8()), int8(r.u8())
		if r.err == nil && flags&^1 != 0 {
			r.err = protoErr("unknown compress flags %#x", flags)
		}
		req = c
	case TClose:
		req = Close{Ctx: r.u32()}
	case TStatus:
		req = Status{}
	case TStats:
		req = StatsRequest{}
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return req, nil
}

// AppendRequest encodes req's body and returns its type.
func AppendRequest(b []byte, req Request) ([]byte, Type, error) {
	switch v := req.(type) {
	case Hello:
		return binary.LittleEndian.AppendUint16(b, v.Version), THello, nil
	case Open:
		if len(v.Profile) > MaxProfile {
			return nil, 0, fmt.Errorf("encproto: profile %q too long", v.Profile)
		}
		b = append(b, byte(v.Codec), byte(v.Format))
		b = binary.LittleEndian.AppendUint16(b, v.Width)
		b = binary.LittleEndian.AppendUint16(b, v.Height)
		var flags byte
		if v.CPUOnly {
			flags |= 1
		}
		b = append(b, v.Quality, v.Speed, flags)
		return appendStr(b, v.Profile), TOpen, nil
	case Compress:
		b = binary.LittleEndian.AppendUint32(b, v.Ctx)
		b = binary.LittleEndian.AppendUint32(b, v.Stride)
		b = binary.LittleEndian.AppendUint64(b, v.Offset)
		var flags byte
		if v.Keyframe {
			flags |= 1
		}
		return append(b, flags, byte(v.Quality), byte(v.Speed)), TCompress, nil
	case Close:
		return binary.LittleEndian.AppendUint32(b, v.Ctx), TClose, nil
	case Status:
		return b, TStatus, nil
	case StatsRequest:
		return b, TStats, nil
	}
	return nil, 0, fmt.Errorf("encproto: %T is not a request", req)
}

// Backend that serves a context.
type Backend uint8

// Backends.
const (
	X264  Backend = 1
	NVENC Backend = 2
	JPEG  Backend = 3
)

func (b Backend) String() string {
	switch b {
	case X264:
		return "x264"
	case NVENC:
		return "nvenc"
	case JPEG:
		return "jpeg"
	}
	return fmt.Sprintf("backend(%d)", uint8(b))
}

// HelloReply says what the worker serves.
type HelloReply struct {
	Version uint16
	// Codecs the pool can serve now (h265 only with a usable GPU).
	Codecs              []codec.Codec
	MaxWidth, MaxHeight uint16
	// Note is why there is no GPU ("" when there is one).
	Note string
}

// Opened is an admitted context.
type Opened struct {
	Ctx     uint32
	Backend Backend
	GPU     int8 // NVML index, -1 on the CPU
	// Fallback says why a video context runs on the CPU.
	Fallback string
}

// Compressed is one frame's bitstream.
type Compressed struct {
	Keyframe bool
	Data     []byte
}

// Closed acknowledges Close.
type Closed struct{}

// StatusReply is a JSON document (encode/server's Status).
type StatusReply struct{ JSON []byte }

// Frame results in StatsReply.Frames.
const (
	FrameOK       = 0 // encoded
	FrameFailed   = 1 // the backend failed (EncodeFailed)
	FrameRejected = 2 // refused before the backend: no such context, a bad memfd or stride (NoContext, BadFrame)
	NumResults    = 3
)

// NumBackends is Frames' first dimension: Backend values, 0 for a frame
// without a context (rejected, so no backend).
const NumBackends = 4

// StatsReply is the worker's counters since Start, a fixed layout of
// little-endian fields (StatsSize bytes): u64 Start, u32 Conns,
// Contexts, InFlight, u64 OpensRefused, then Frames row by row, u64 each.
type StatsReply struct {
	Start        uint64 // when the worker started, unix seconds: the counters count from then
	Conns        uint32 // connections now, on every socket it serves
	Contexts     uint32 // encoding contexts open now
	InFlight     uint32 // frames received and not yet encoded: the queue
	OpensRefused uint64 // contexts the pool refused (the client sends without it)
	// Frames by backend (Backend value; 0: no context) and result
	// (FrameOK, FrameFailed, FrameRejected).
	Frames [NumBackends][NumResults]uint64
}

// ErrorCode says what went wrong.
type ErrorCode uint16

// Error codes.
const (
	BadRequest   ErrorCode = 1 // malformed: the server closes the connection
	Refused      ErrorCode = 2 // admission refused: send without the pool
	NoContext    ErrorCode = 3 // no such context on this connection
	BadFrame     ErrorCode = 4 // memfd, stride or size unusable
	EncodeFailed ErrorCode = 5 // the backend failed on this frame
	Invalid      ErrorCode = 6 // parameters out of range (size, format, profile)
)

func (c ErrorCode) String() string {
	switch c {
	case BadRequest:
		return "bad request"
	case Refused:
		return "refused"
	case NoContext:
		return "no such context"
	case BadFrame:
		return "bad frame"
	case EncodeFailed:
		return "encode failed"
	case Invalid:
		return "invalid parameters"
	}
	return fmt.Sprintf("error(%d)", uint16(c))
}

// Error is a failed request.
type Error struct {
	Code    ErrorCode
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("encoder: %v: %s", e.Code, e.Message) }

// Reply is one of HelloReply, Opened, Compressed, Closed, StatusReply,
// StatsReply, *Error.
type Reply any

// AppendReply encodes a reply body except a Compressed bitstream, which
// the caller writes after it (so it is never copied into a buffer).
func AppendReply(b []byte, rep Reply) ([]byte, Type, error) {
	switch v := rep.(type) {
	case HelloReply:
		b = binary.LittleEndian.AppendUint16(b, v.Version)
		if len(v.Codecs) > 8 {
			return nil, 0, fmt.Errorf("encproto: %d codecs", len(v.Codecs))
		}
		b = append(b, byte(len(v.Codecs)))
		for _, c := range v.Codecs {
			b = append(b, byte(c))
		}
		b = binary.LittleEndian.AppendUint16(b, v.MaxWidth)
		b = binary.LittleEndian.AppendUint16(b, v.MaxHeight)
		return appendStr(b, clip(v.Note)), THelloReply, nil
	case Opened:
		b = binary.LittleEndian.AppendUint32(b, v.Ctx)
		b = append(b, byte(v.Backend), byte(v.GPU))
		return appendStr(b, clip(v.Fallback)), TOpened, nil
	case Compressed:
		var flags byte
		if v.Keyframe {
			flags |= 1
		}
		return append(b, flags), TCompressed, nil
	case Closed:
		return b, TClosed, nil
	case StatusReply:
		return append(b, v.JSON...), TStatusReply, nil
	case StatsReply:
		b = binary.LittleEndian.AppendUint64(b, v.Start)
		b = binary.LittleEndian.AppendUint32(b, v.Conns)
		b = binary.LittleEndian.AppendUint32(b, v.Contexts)
		b = binary.LittleEndian.AppendUint32(b, v.InFlight)
		b = binary.LittleEndian.AppendUint64(b, v.OpensRefused)
		for _, row := range v.Frames {
			for _, n := range row {
				b = binary.LittleEndian.AppendUint64(b, n)
			}
		}
		return b, TStatsReply, nil
	case *Error:
		b = binary.LittleEndian.AppendUint16(b, uint16(v.Code))
		return appendStr(b, clip(v.Message)), TError, nil
	}
	return nil, 0, fmt.Errorf("encproto: %T is not a reply", rep)
}

func clip(s string) string {
	if len(s) > MaxString {
		return s[:MaxString]
	}
	return s
}

// ParseReply decodes a reply body. A Compressed reply's Data aliases
// body.
func ParseReply(h Header, body []byte) (Reply, error) {
	if h.Type.IsRequest() {
		return nil, protoErr("%v is not a reply", h.Type)
	}
	if len(body) != int(h.Len) {
		return nil, protoErr("body of %d bytes, header says %d", len(body), h.Len)
	}
	r := &reader{b: body}
	var rep Reply
	switch h.Type {
	case THelloReply:
		v := HelloReply{Version: r.u16()}
		n := int(r.u8())
		if n > 8 {
			return nil, protoErr("%d codecs", n)
		}
		for _, c := range r.take(n) {
			v.Codecs = append(v.Codecs, codec.Codec(c))
		}
		v.MaxWidth, v.MaxHeight = r.u16(), r.u16()
		v.Note = r.str(MaxString)
		rep = v
	case TOpened:
		rep = Opened{Ctx: r.u32(), Backend: Backend(r.u8()), GPU: int8(r.u8()), Fallback: r.str(MaxString)}
	case TCompressed:
		flags := r.u8()
		if r.err == nil && flags&^1 != 0 {
			// As for requests: a bit we do not know is a peer we do not
			// understand, not one to guess about.
			r.err = protoErr("unknown compressed flags %#x", flags)
		}
		rep = Compressed{Keyframe: flags&1 != 0, Data: r.take(len(r.b))}
	case TClosed:
		rep = Closed{}
	case TStatusReply:
		rep = StatusReply{JSON: r.take(len(r.b))}
	case TStatsReply:
		v := StatsReply{Start: r.u64(), Conns: r.u32(), Contexts: r.u32(), InFlight: r.u32(), OpensRefused: r.u64()}
		for i := range v.Frames {
			for j := range v.Frames[i] {
				v.Frames[i][j] = r.u64()
			}
		}
		rep = v
	case TError:
		rep = &Error{Code: ErrorCode(r.u16()), Message: r.str(MaxString)}
	default:
		return nil, protoErr("unknown reply %v", h.Type)
	}
	if err := r.end(); err != nil {
		return nil, err
	}
	return rep, nil
}
