// SPDX-License-Identifier: GPL-2.0-or-later

// The C side of the NVENC backend: the driver's libraries are opened at
// run time by nv-codec-headers' loader, so nothing here links against
// the NVIDIA driver.
#ifndef XPRA_PROXY_NVENC_H
#define XPRA_PROXY_NVENC_H

#include <stdint.h>

typedef struct nv_enc nv_enc;

// nv_load opens libcuda.so.1 and libnvidia-encode.so.1 once and checks
// the driver's NVENC API version; 0 or -1 with a message in err.
int nv_load(char *err, int errlen);

// nv_open opens an encoder on the CUDA device whose UUID is uuid (NVML's
// "GPU-..." form; "" for the first device). codec: 1 h264, 2 hevc.
// format: 1 BGRX/BGRA, 2 RGBX/RGBA, 3 BGR, 4 RGB. speed picks the preset,
// qp the constant quantizer.
nv_enc *nv_open(const char *uuid, int codec, int width, int height, int format, int speed, int qp, char *err, int errlen);

// nv_encode compresses one frame; returns the bitstream size and points
// *out at the context's copy of it, or -1 with a message in err.
int nv_encode(nv_enc *e, const uint8_t *src, int stride, int keyframe, int qp, uint8_t **out, int *idr, char *err, int errlen);

void nv_close(nv_enc *e);

#endif
