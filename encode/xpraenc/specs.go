// SPDX-License-Identifier: GPL-2.0-or-later

package xpraenc

import (
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// inputFormats are the packed layouts every backend of the pool takes
// (encode/codec), in the order xpra lists them.
var inputFormats = []string{"BGRX", "BGRA", "RGBX", "RGBA", "BGR", "RGB"}

// videoSpecs is the "video" dict of the encodings packet:
// {encoding: {input colorspace: [spec]}}, with one spec per pair whose
// codec_type says where the pool will place it (nvenc with a usable GPU,
// x264 without; the pool still falls back to x264 when the GPUs are
// full). The keys are 6.x VideoSpec's (codecs/constants.py); the costs
// and scores are ours: x264's as 6.x's x264 states them, NVENC cheap on
// the CPU and fast. names lists the encodings.
func videoSpecs(gpu bool, cfg Config) (value.Dict, []any) {
	type scores struct{ quality, speed, size, setup, cpu, gpu int64 }
	codecType := "x264"
	sc := scores{quality: 60, speed: 60, size: 60, setup: 20, cpu: 100, gpu: 0}
	encodings := []string{"h264"}
	if gpu {
		codecType = "nvenc"
		sc = scores{quality: 60, speed: 100, size: 60, setup: 80, cpu: 10, gpu: 100}
		encodings = append(encodings, "h265")
	}
	var video value.Dict
	var names []any
	for _, enc := range encodings {
		var byFormat value.Dict
		for _, f := range inputFormats {
			spec := value.Dict{
				{Key: "codec_type", Value: codecType},
				{Key: "encoding", Value: enc},
				{Key: "input_colorspace", Value: f},
				{Key: "output_colorspaces", Value: []any{"YUV420P"}},
				{Key: "has_lossless_mode", Value: false},
				{Key: "quality", Value: sc.quality},
				{Key: "speed", Value: sc.speed},
				{Key: "size_efficiency", Value: sc.size},
				{Key: "setup_cost", Value: sc.setup},
				{Key: "cpu_cost", Value: sc.cpu},
				{Key: "gpu_cost", Value: sc.gpu},
				// 4:2:0 needs even sizes (encode/codec Validate).
				{Key: "min_w", Value: int64(2)},
				{Key: "min_h", Value: int64(2)},
				{Key: "max_w", Value: int64(cfg.MaxWidth)},
				{Key: "max_h", Value: int64(cfg.MaxHeight)},
				{Key: "width_mask", Value: int64(0xFFFE)},
				{Key: "height_mask", Value: int64(0xFFFE)},
				{Key: "can_scale", Value: false},
				{Key: "score_boost", Value: int64(0)},
				{Key: "max_instances", Value: int64(cfg.MaxContextsPerConn)},
			}
			byFormat = append(byFormat, value.Item{Key: f, Value: []any{spec}})
		}
		video = append(video, value.Item{Key: enc, Value: byFormat})
		names = append(names, enc)
	}
	return video, names
}
