// SPDX-License-Identifier: GPL-2.0-or-later

// NVENC through nv-codec-headers (Debian's libffmpeg-nvenc-dev). The
// loader dlopens the driver's libraries; its messages go to the caller's
// error buffer instead of stderr.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#define FFNV_LOG_FUNC(logctx, msg, ...) snprintf((char *)(logctx), 256, (msg), __VA_ARGS__)
#define FFNV_DEBUG_LOG_FUNC(logctx, msg, ...)
#include <ffnvcodec/dynlink_loader.h>
#include <libyuv/convert_argb.h>

#include "nvenc.h"

static CudaFunctions *cu;
static NvencFunctions *nv;
static NV_ENCODE_API_FUNCTION_LIST api;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
static int loaded; // 1 ok, -1 failed
static char load_err[256];

int nv_load(char *err, int errlen) {
	pthread_mutex_lock(&load_lock);
	if (loaded == 0) {
		char msg[256] = "";
		loaded = -1;
		if (nvenc_load_functions(&nv, msg) < 0) {
			snprintf(load_err, sizeof(load_err), "no NVENC driver: %s", msg);
		} else if (cuda_load_functions(&cu, msg) < 0) {
			snprintf(load_err, sizeof(load_err), "no CUDA driver: %s", msg);
		} else {
			uint32_t max = 0;
			uint32_t need = (NVENCAPI_MAJOR_VERSION << 4) | NVENCAPI_MINOR_VERSION;
			if (nv->NvEncodeAPIGetMaxSupportedVersion(&max) != NV_ENC_SUCCESS) {
				snprintf(load_err, sizeof(load_err), "NVENC: cannot read the driver's API version");
			} else if (max < need) {
				snprintf(load_err, sizeof(load_err), "NVENC: driver supports API %u.%u, need %u.%u",
					max >> 4, max & 15, NVENCAPI_MAJOR_VERSION, NVENCAPI_MINOR_VERSION);
			} else {
				api.version = NV_ENCODE_API_FUNCTION_LIST_VER;
				if (nv->NvEncodeAPICreateInstance(&api) != NV_ENC_SUCCESS) {
					snprintf(load_err, sizeof(load_err), "NVENC: NvEncodeAPICreateInstance failed");
				} else if (cu->cuInit(0) != CUDA_SUCCESS) {
					snprintf(load_err, sizeof(load_err), "CUDA: cuInit failed");
				} else {
					loaded = 1;
				}
			}
		}
	}
	int ok = loaded;
	if (ok < 0)
		snprintf(err, errlen, "%s", load_err);
	pthread_mutex_unlock(&load_lock);
	return ok > 0 ? 0 : -1;
}

struct nv_enc {
	CUcontext ctx;
	void *enc;
	NV_ENC_INPUT_PTR in;
	NV_ENC_OUTPUT_PTR out;
	NV_ENC_BUFFER_FORMAT fmt;
	int format, width, height, qp;
	uint64_t pts;
	NV_ENC_INITIALIZE_PARAMS init;
	NV_ENC_PRESET_CONFIG preset;
	uint8_t *bits;
	size_t bits_cap;
};

static int find_device(const char *uuid, CUdevice *dev) {
	int n = 0;
	if (cu->cuDeviceGetCount(&n) != CUDA_SUCCESS || n == 0)
		return -1;
	for (int i = 0; i < n; i++) {
		CUdevice d;
		CUuuid u;
		char s[64];
		if (cu->cuDeviceGet(&d, i) != CUDA_SUCCESS)
			continue;
		if (!uuid[0]) {
			*dev = d;
			return 0;
		}
		if (cu->cuDeviceGetUuid(&u, d) != CUDA_SUCCESS)
			continue;
		const unsigned char *b = (const unsigned char *)u.bytes;
		snprintf(s, sizeof(s), "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
			b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
		if (strcmp(s, uuid) == 0) {
			*dev = d;
			return 0;
		}
	}
	return -1;
}

static GUID preset_guid(int speed) {
	// P7 (best) .. P1 (fastest); low-latency tuning on all.
	static const GUID *presets[] = {&NV_ENC_PRESET_P7_GUID, &NV_ENC_PRESET_P6_GUID, &NV_ENC_PRESET_P5_GUID,
		&NV_ENC_PRESET_P4_GUID, &NV_ENC_PRESET_P3_GUID, &NV_ENC_PRESET_P2_GUID, &NV_ENC_PRESET_P1_GUID};
	int i = speed * 7 / 101;
	return *presets[i < 0 ? 0 : i > 6 ? 6 : i];
}

static void set_qp(nv_enc *e, int qp) {
	NV_ENC_RC_PARAMS *rc = &e->preset.presetCfg.rcParams;
	rc->rateControlMode = NV_ENC_PARAMS_RC_CONSTQP;
	rc->constQP.qpInterP = qp;
	rc->constQP.qpInterB = qp;
	rc->constQP.qpIntra = qp > 2 ? qp - 2 : qp;
	e->qp = qp;
}

void nv_close(nv_enc *e) {
	if (!e)
		return;
	if (e->enc) {
		if (e->in)
			api.nvEncDestroyInputBuffer(e->enc, e->in);
		if (e->out)
			api.nvEncDestroyBitstreamBuffer(e->enc, e->out);
		api.nvEncDestroyEncoder(e->enc);
	}
	if (e->ctx)
		cu->cuCtxDestroy(e->ctx);
	free(e->bits);
	free(e);
}

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); nv_close(e); return NULL; } while (0)

nv_enc *nv_open(const char *uuid, int codec, int width, int height, int format, int speed, int qp, char *err, int errlen) {
	if (nv_load(err, errlen) < 0)
		return NULL;
	nv_enc *e = calloc(1, sizeof(*e));
	if (!e) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->format = format;
	e->width = width;
	e->height = height;
	// 24-bit input is widened to ARGB by libyuv; NVENC takes no packed 24-bit.
	e->fmt = (format == 2) ? NV_ENC_BUFFER_FORMAT_ABGR : NV_ENC_BUFFER_FORMAT_ARGB;

	CUdevice dev;
	if (find_device(uuid, &dev) < 0)
		FAIL("CUDA: no device %s", uuid[0] ? uuid : "0");
	if (cu->cuCtxCreate(&e->ctx, 0, dev) != CUDA_SUCCESS)
		FAIL("CUDA: cuCtxCreate failed");
	CUcontext dummy;
	cu->cuCtxPopCurrent(&dummy);

	NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS sp = {0};
	sp.version = NV_ENC_OPEN_ENCODE_SESSION_EX_PARAMS_VER;
	sp.deviceType = NV_ENC_DEVICE_TYPE_CUDA;
	sp.device = e->ctx;
	sp.apiVersion = NVENCAPI_VERSION;
	NVENCSTATUS st = api.nvEncOpenEncodeSessionEx(&sp, &e->enc);
	if (st != NV_ENC_SUCCESS) {
		e->enc = NULL;
		FAIL("NVENC: opening a session failed (%d; the driver's session limit?)", st);
	}

	GUID codec_guid = codec == 2 ? NV_ENC_CODEC_HEVC_GUID : NV_ENC_CODEC_H264_GUID;
	GUID preset = preset_guid(speed);
	e->preset.version = NV_ENC_PRESET_CONFIG_VER;
	e->preset.presetCfg.version = NV_ENC_CONFIG_VER;
	st = api.nvEncGetEncodePresetConfigEx(e->enc, codec_guid, preset, NV_ENC_TUNING_INFO_LOW_LATENCY, &e->preset);
	if (st != NV_ENC_SUCCESS)
		FAIL("NVENC: no preset for this codec (%d)", st);
	NV_ENC_CONFIG *cfg = &e->preset.presetCfg;
	cfg->gopLength = NVENC_INFINITE_GOPLENGTH;
	cfg->frameIntervalP = 1;
	set_qp(e, qp);
	if (codec == 2) {
		cfg->encodeCodecConfig.hevcConfig.repeatSPSPPS = 1;
		cfg->encodeCodecConfig.hevcConfig.idrPeriod = NVENC_INFINITE_GOPLENGTH;
	} else {
		cfg->encodeCodecConfig.h264Config.repeatSPSPPS = 1;
		cfg->encodeCodecConfig.h264Config.idrPeriod = NVENC_INFINITE_GOPLENGTH;
	}

	NV_ENC_INITIALIZE_PARAMS *ip = &e->init;
	ip->version = NV_ENC_INITIALIZE_PARAMS_VER;
	ip->encodeGUID = codec_guid;
	ip->presetGUID = preset;
	ip->encodeWidth = ip->darWidth = ip->maxEncodeWidth = width;
	ip->encodeHeight = ip->darHeight = ip->maxEncodeHeight = height;
	ip->frameRateNum = 30;
	ip->frameRateDen = 1;
	ip->enablePTD = 1;
	ip->encodeConfig = cfg;
	ip->tuningInfo = NV_ENC_TUNING_INFO_LOW_LATENCY;
	st = api.nvEncInitializeEncoder(e->enc, ip);
	if (st != NV_ENC_SUCCESS)
		FAIL("NVENC: initializing a %dx%d encoder failed (%d)", width, height, st);

	NV_ENC_CREATE_INPUT_BUFFER ib = {0};
	ib.version = NV_ENC_CREATE_INPUT_BUFFER_VER;
	ib.width = width;
	ib.height = height;
	ib.bufferFmt = e->fmt;
	st = api.nvEncCreateInputBuffer(e->enc, &ib);
	if (st != NV_ENC_SUCCESS)
		FAIL("NVENC: input buffer (%d)", st);
	e->in = ib.inputBuffer;

	NV_ENC_CREATE_BITSTREAM_BUFFER bb = {0};
	bb.version = NV_ENC_CREATE_BITSTREAM_BUFFER_VER;
	st = api.nvEncCreateBitstreamBuffer(e->enc, &bb);
	if (st != NV_ENC_SUCCESS)
		FAIL("NVENC: bitstream buffer (%d)", st);
	e->out = bb.bitstreamBuffer;
	return e;
}

#undef FAIL

static int copy_in(nv_enc *e, const uint8_t *src, int stride, uint8_t *dst, int pitch) {
	switch (e->format) {
	case 1:
	case 2: // same byte order in and out: a plain row copy
		return ARGBCopy(src, stride, dst, pitch, e->width, e->height);
	case 3:
		return RGB24ToARGB(src, stride, dst, pitch, e->width, e->height);
	case 4:
		return RAWToARGB(src, stride, dst, pitch, e->width, e->height);
	}
	return -1;
}

int nv_encode(nv_enc *e, const uint8_t *src, int stride, int keyframe, int qp, uint8_t **out, int *idr, char *err, int errlen) {
	NVENCSTATUS st;
	if (qp >= 0 && qp != e->qp) {
		NV_ENC_RECONFIGURE_PARAMS rp = {0};
		rp.version = NV_ENC_RECONFIGURE_PARAMS_VER;
		set_qp(e, qp);
		rp.reInitEncodeParams = e->init;
		st = api.nvEncReconfigureEncoder(e->enc, &rp);
		if (st != NV_ENC_SUCCESS) {
			snprintf(err, errlen, "NVENC: reconfigure to qp %d (%d)", qp, st);
			return -1;
		}
	}
	NV_ENC_LOCK_INPUT_BUFFER li = {0};
	li.version = NV_ENC_LOCK_INPUT_BUFFER_VER;
	li.inputBuffer = e->in;
	st = api.nvEncLockInputBuffer(e->enc, &li);
	if (st != NV_ENC_SUCCESS) {
		snprintf(err, errlen, "NVENC: lock input (%d)", st);
		return -1;
	}
	int rc = copy_in(e, src, stride, li.bufferDataPtr, li.pitch);
	int pitch = li.pitch;
	api.nvEncUnlockInputBuffer(e->enc, e->in);
	if (rc != 0) {
		snprintf(err, errlen, "NVENC: pixel copy failed");
		return -1;
	}

	NV_ENC_PIC_PARAMS pp = {0};
	pp.version = NV_ENC_PIC_PARAMS_VER;
	pp.inputWidth = e->width;
	pp.inputHeight = e->height;
	pp.inputPitch = pitch; // bytes, as the locked buffer reported (ffmpeg does the same)
	pp.inputBuffer = e->in;
	pp.outputBitstream = e->out;
	pp.bufferFmt = e->fmt;
	pp.pictureStruct = NV_ENC_PIC_STRUCT_FRAME;
	pp.inputTimeStamp = e->pts++;
	if (keyframe)
		pp.encodePicFlags = NV_ENC_PIC_FLAG_FORCEIDR | NV_ENC_PIC_FLAG_OUTPUT_SPSPPS;
	st = api.nvEncEncodePicture(e->enc, &pp);
	if (st != NV_ENC_SUCCESS) {
		snprintf(err, errlen, "NVENC: encode (%d)", st);
		return -1;
	}

	NV_ENC_LOCK_BITSTREAM lb = {0};
	lb.version = NV_ENC_LOCK_BITSTREAM_VER;
	lb.outputBitstream = e->out;
	st = api.nvEncLockBitstream(e->enc, &lb);
	if (st != NV_ENC_SUCCESS) {
		snprintf(err, errlen, "NVENC: lock bitstream (%d)", st);
		return -1;
	}
	size_t n = lb.bitstreamSizeInBytes;
	if (n > e->bits_cap) {
		uint8_t *b = realloc(e->bits, n);
		if (!b) {
			api.nvEncUnlockBitstream(e->enc, e->out);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		e->bits = b;
		e->bits_cap = n;
	}
	memcpy(e->bits, lb.bitstreamBufferPtr, n);
	*idr = lb.pictureType == NV_ENC_PIC_TYPE_IDR;
	api.nvEncUnlockBitstream(e->enc, e->out);
	*out = e->bits;
	return (int)n;
}
