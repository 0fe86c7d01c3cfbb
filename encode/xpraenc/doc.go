// SPDX-License-Identifier: GPL-2.0-or-later

// Package xpraenc serves xpra's own encoder protocol (the one `xpra
// encoder` speaks from 6.3 on) from the shared encoder pool, so a 6.x
// xpra server started with
//
//	--video-encoders=remote:uri=socket:///run/xpra/encoder
//
// sends its video frames here and gets NVENC or x264 contexts placed,
// admitted and limited exactly as the session workers' contexts are
// (encode/server's OpenContext on the same pool).
//
// Who may connect is decided by the peer's uid (SO_PEERCRED) before a
// byte is read, as for the encproto socket. There is no xpra
// authentication: the socket's users are the machine's own.
//
// # The protocol, and where each fact comes from (xpra 6.x, GPL, read for facts only)
//
// Framing, rencodeplus, lz4 and raw chunks are PROTOCOL.md §1-3 and the
// protocol packages. The caller is xpra/codecs/remote/encoder.py
// (EncoderClient, Encoder) on top of xpra/codecs/remote/common.py
// (RemoteCodecClient, RemoteCodec) and xpra/client/base/adapter.py
// (RemoteServerAdapter); the reference server is
// xpra/server/encoder/server.py (EncoderServer). Read from the stored
// Xpra-org/xpra blobs of: codecs/remote/encoder.py 026aa13f,
// codecs/remote/common.py 036cb9d8, client/base/adapter.py 036cb9d8,
// client/subsystem/mmap.py 083f95de, server/encoder/server.py 093fa4e0,
// server/source/encodings.py c8b917e9, codecs/constants.py 029f7b58,
// codecs/x264/encoder.pyx 04aacedb.
//
//   - Hello: the caller sends client_type=encode, encodings
//     (rgb32, rgb24), windows/keyboard/mouse False, network-state False
//     (so nobody pings), wants (encodings, video), its mmap areas and
//     packet encoder / compressor caps (common.py
//     RemoteCodecClient.make_hello, adapter.py send_hello). It sends
//     with rencodeplus and lz4 from the first packet and never adopts
//     ours (adapter.py make_protocol: enable_default_encoder /
//     enable_default_compressor; _process_hello only runs the mmap
//     subsystem's parse_server_capabilities).
//   - mmap: the caller asks for both areas by default (adapter.py
//     RemoteServerAdapter.init: mmap "auto" becomes "both"). Our hello
//     has no "mmap" key, and then the caller drops both areas and sends
//     pixels inline (xpra/client/subsystem/mmap.py
//     MmapClient.parse_server_capabilities: no mmap caps → clean_areas).
//     A context-compress that still names mmap chunks is refused.
//   - After the hello the caller waits up to 5 s for startup-complete
//     before it sends anything (adapter.py send_hello → connect_event,
//     _process_startup_complete), so it follows hello at once, after
//     the encodings packet.
//   - encodings: ["encodings", {"encodings": {...}, "video": {encoding:
//     {input colorspace: [spec dict, ...]}}}] (xpra/server/source/
//     encodings.py EncodingsMixin.threaded_init_complete, video part when
//     "video" is in the client's wants). The spec dicts are VideoSpec
//     minus codec_class (xpra/codecs/constants.py _codec_spec and
//     VideoSpec fields: codec_type, quality, speed, size_efficiency,
//     setup_cost, cpu_cost, gpu_cost, min_w, min_h, max_w, max_h,
//     can_scale, score_boost, width_mask, height_mask, max_instances,
//     encoding, input_colorspace, output_colorspaces,
//     has_lossless_mode); the caller needs codec_type and warns on any
//     key VideoSpec lacks (encoder.py make_spec), and keeps only the
//     encodings in XPRA_REMOTE_ENCODINGS (default h264,vp8,vp9:
//     encoder.py _process_encodings), so h265 is offered but unused by
//     a default caller.
//   - context-request(seq, codec_type, encoding, width, height,
//     src_format, options) → context-response(seq, ok, message, info)
//     (encoder.py request_context, _process_context_response; server.py
//     _process_context_request). seq is the caller's codec generation
//     number, unique per caller process.
//   - context-compress(seq, metadata{x, y, width, height, depth,
//     bytesperpixel, planes, rowstride, pixel_format, full_range},
//     pixels, options, send_opts{lz4, chunks}) → context-data(seq, data,
//     client_options, reply_opts) (encoder.py compress and
//     _process_context_data; server.py _process_context_compress). An
//     unknown context gets context-data(seq, b"", {"error": ...}, {})
//     there, and so it does here when the seq is one the connection
//     asked for (refused or closed since); a seq it never asked for is a
//     protocol error. The caller waits 1 s for each reply
//     (encoder.py Encoder.compress_image), so frames are encoded in the
//     order they come, one connection at a time.
//   - client_options are what 6.x's x264 returns
//     (xpra/codecs/x264/encoder.pyx Encoder.do_compress_image): frame,
//     pts, csc, full-range, type (only when not "P"), profile (first
//     frame). Our backends convert to 4:2:0, so csc is YUV420P, and the
//     specs' output_colorspaces say so.
//   - context-close(seq, message): no reply; an unknown seq is ignored
//     (server.py _process_context_close).
//   - encode(input_coding, pixel_format, raw_data, width, height,
//     rowstride, options, metadata) → encode-response(coding, data,
//     client_options, width, height, stride, bpp, metadata), the
//     encoding being the one the client's hello set (server.py
//     _process_encode; failures disconnect with "server error").
//
// Limits: frame and context sizes (Config.MaxWidth/MaxHeight, the
// worker's --max-width/--max-height), contexts per connection, one
// packet at most one frame's worth of pixels plus 1 MiB and whole
// within Config.BodyTimeout of its first header, the pixel buffer
// exactly as long as its metadata says. A packet that breaks
// them, or is malformed, ends its connection with a disconnect packet
// saying why ("protocol error"); other connections are not affected.
package xpraenc
