// SPDX-License-Identifier: GPL-2.0-or-later

package pool

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
)

// figures are what one mock GPU's NVML answers.
type figures struct {
	capH264, capHEVC int
	util             uint32
	sessions         int
	// capRet fails the capacity query (NOT_SUPPORTED: no NVENC), utilRet
	// the utilization query (GPU_IS_LOST).
	capRet, utilRet nvml.Return
}

func idle() figures { return figures{capH264: 100, capHEVC: 100} }

// mockNVML builds go-nvml's mock server with one A100-shaped device per
// entry and answers the encoder queries from figs, which tests may change
// between steps.
func mockNVML(t *testing.T, figs []*figures) *server.Server {
	t.Helper()
	cfgs := gpus.Multiple(len(figs), gpus.A100_SXM4_40GB)
	s, err := server.New(server.WithGPUs(cfgs...), server.WithDriverVersion("550.54.15"))
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range figs {
		d := s.Devices[i].(*server.Device)
		d.GetEncoderCapacityFunc = func(q nvml.EncoderType) (int, nvml.Return) {
			if f.capRet != nvml.SUCCESS {
				return 0, f.capRet
			}
			if q == nvml.ENCODER_QUERY_HEVC {
				return f.capHEVC, nvml.SUCCESS
			}
			return f.capH264, nvml.SUCCESS
		}
		d.GetEncoderUtilizationFunc = func() (uint32, uint32, nvml.Return) {
			if f.utilRet != nvml.SUCCESS {
				return 0, 0, f.utilRet
			}
			return f.util, 167000, nvml.SUCCESS
		}
		d.GetEncoderSessionsFunc = func() ([]nvml.EncoderSessionInfo, nvml.Return) {
			return make([]nvml.EncoderSessionInfo, f.sessions), nvml.SUCCESS
		}
	}
	return s
}

// step is one admission (or release) in a sequence.
type step struct {
	uid     uint32
	codec   codec.Codec
	release int // release the lease of this earlier step (1-based) instead
	set     func(figs []*figures)
	// expected outcome
	gpu     int    // GPU index, or -1 for CPU
	refused string // substring of the refusal, "" for admitted
	reason  string // substring of the CPU fallback reason
}

func cpu(reason string) step { return step{uid: 1000, codec: codec.H264, gpu: -1, reason: reason} }
func on(g int) step          { return step{uid: 1000, codec: codec.H264, gpu: g} }

func TestPlacement(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		figs  []figures
		init  nvml.Return // what Init answers (SUCCESS unless set)
		noGPU string
		steps []step
	}{
		{
			name: "no NVML library: CPU", init: nvml.ERROR_LIBRARY_NOT_FOUND,
			figs: []figures{idle()}, noGPU: "libnvidia-ml.so.1 not found",
			steps: []step{cpu("libnvidia-ml.so.1 not found"), cpu("no GPU")},
		},
		{
			name: "driver not loaded: CPU", init: nvml.ERROR_DRIVER_NOT_LOADED,
			figs: []figures{idle()}, noGPU: "kernel driver not loaded",
			steps: []step{cpu("kernel driver")},
		},
		{
			name: "no device", noGPU: "sees no device",
			steps: []step{cpu("sees no device")},
		},
		{
			name: "device without NVENC", noGPU: "no GPU with an encoder",
			figs:  []figures{{capRet: nvml.ERROR_NOT_SUPPORTED}},
			steps: []step{cpu("no encoder")},
		},
		{
			name:  "least utilized GPU",
			figs:  []figures{{capH264: 100, util: 50}, {capH264: 100, util: 10}, {capH264: 100, util: 30}},
			steps: []step{on(1)},
		},
		{
			name:  "most remaining capacity",
			figs:  []figures{{capH264: 30}, {capH264: 90}, {capH264: 60}},
			steps: []step{on(1)},
		},
		{
			name:  "the worse of utilization and used capacity counts",
			figs:  []figures{{capH264: 100, util: 40}, {capH264: 50, util: 5}},
			steps: []step{on(0)},
		},
		{
			name:  "equal load: fewer sessions, so identical GPUs take turns",
			figs:  []figures{idle(), idle()},
			steps: []step{on(0), on(1), on(0), on(1)},
		},
		{
			name: "other processes' sessions count",
			figs: []figures{{capH264: 100, sessions: 3}, {capH264: 100, sessions: 1}},
			// NVML lists our sessions once opened; until then our count stands in.
			steps: []step{on(1), on(1), on(1), on(0)},
		},
		{
			name:  "load changes between placements",
			figs:  []figures{idle(), {capH264: 100, util: 20}},
			steps: []step{on(0), {uid: 1000, codec: codec.H264, gpu: 1, set: func(f []*figures) { f[0].util = 70 }}},
		},
		{
			name: "per-GPU limit, then CPU",
			cfg:  Config{MaxPerGPU: 2},
			figs: []figures{idle(), idle()},
			steps: []step{on(0), on(1), on(0), on(1), cpu("gpu0: 2 contexts, the limit"),
				{release: 3, gpu: -1}, on(0)},
		},
		{
			name:  "busy encoder skipped",
			cfg:   Config{MaxUtilization: 80},
			figs:  []figures{{capH264: 100, util: 85}, {capH264: 100, util: 70}},
			steps: []step{on(1), {uid: 1000, codec: codec.H264, gpu: -1, reason: "85% busy", set: func(f []*figures) { f[1].util = 95 }}},
		},
		{
			name:  "no capacity left",
			figs:  []figures{{capH264: 0, capHEVC: 0}},
			steps: []step{cpu("no encoder capacity left")},
		},
		{
			name:  "a lost GPU is skipped",
			figs:  []figures{idle(), {capH264: 100, util: 50}},
			steps: []step{{uid: 1000, codec: codec.H264, gpu: 1, set: func(f []*figures) { f[0].utilRet = nvml.ERROR_GPU_IS_LOST }}},
		},
		{
			name: "per-user GPU share, then that user's CPU; others keep the GPU",
			cfg:  Config{MaxGPUPerUser: 2},
			figs: []figures{idle()},
			steps: []step{on(0), on(0), cpu("user's GPU share used"),
				{uid: 1001, codec: codec.H264, gpu: 0},
				{release: 1, gpu: -1}, on(0)},
		},
		{
			name: "per-user total limit refuses",
			cfg:  Config{MaxPerUser: 2},
			figs: []figures{idle()},
			steps: []step{on(0), {uid: 1000, codec: codec.JPEG, gpu: -1},
				{uid: 1000, codec: codec.H264, refused: "uid 1000 holds 2 contexts"},
				{uid: 1001, codec: codec.H264, gpu: 0},
				{release: 2, gpu: -1}, on(0)},
		},
		{
			name: "CPU limit refuses when the GPUs are full",
			cfg:  Config{MaxPerGPU: 1, MaxCPU: 1},
			figs: []figures{idle()},
			steps: []step{on(0), cpu("gpu0: 1 contexts"),
				{uid: 1001, codec: codec.H264, refused: "pool full"},
				{uid: 1001, codec: codec.JPEG, gpu: -1}, // JPEG is not a video context
				{release: 2, gpu: -1}, cpu("the limit")},
		},
		{
			name: "CPU limit with no GPU",
			cfg:  Config{MaxCPU: 2}, noGPU: "sees no device",
			steps: []step{cpu("no GPU"), cpu("no GPU"), {uid: 7, codec: codec.H264, refused: "pool full: no GPU"},
				{release: 1, gpu: -1}, {uid: 7, codec: codec.H264, gpu: -1}},
		},
		{
			name: "h265 only on a GPU with HEVC capacity",
			figs: []figures{{capH264: 100, capHEVC: 0}, {capH264: 100, capHEVC: 100}},
			steps: []step{{uid: 1000, codec: codec.HEVC, gpu: 1},
				{uid: 1000, codec: codec.HEVC, gpu: 1},
				{uid: 1000, codec: codec.HEVC, refused: "h265 needs a GPU", set: func(f []*figures) { f[1].capHEVC = 0 }}},
		},
		{
			name:  "h265 without GPU refused",
			noGPU: "sees no device",
			steps: []step{{uid: 1000, codec: codec.HEVC, refused: "h265 needs a GPU: no GPU"}},
		},
		{
			name:  "jpeg always on the CPU",
			figs:  []figures{idle()},
			steps: []step{{uid: 1000, codec: codec.JPEG, gpu: -1}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			figs := make([]*figures, len(tc.figs))
			for i := range tc.figs {
				f := tc.figs[i]
				figs[i] = &f
			}
			lib := mockNVML(t, figs)
			if tc.init != nvml.SUCCESS {
				ret := tc.init
				lib.InitFunc = func() nvml.Return { return ret }
			}
			p := Open(lib, tc.cfg, quiet)
			defer p.Close()
			if got := p.Status().NoGPU; !strings.Contains(got, tc.noGPU) || (tc.noGPU == "") != (got == "") {
				t.Fatalf("NoGPU = %q, want %q", got, tc.noGPU)
			}
			leases := make([]*Lease, len(tc.steps))
			for i, s := range tc.steps {
				if s.set != nil {
					s.set(figs)
				}
				if s.release > 0 {
					leases[s.release-1].Release()
					continue
				}
				l, err := p.Admit(s.uid, s.codec)
				if s.refused != "" {
					var re *RefusedError
					if !errors.As(err, &re) || !errors.Is(err, ErrRefused) || !strings.Contains(re.Reason, s.refused) {
						t.Fatalf("step %d: got %v, %v; want refusal %q", i+1, l, err, s.refused)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i+1, err)
				}
				leases[i] = l
				got := -1
				if l.Where == GPU {
					got = l.Device.Index
				}
				if got != s.gpu {
					t.Fatalf("step %d: placed on %d (%v, %q), want %d", i+1, got, l.Where, l.Fallback, s.gpu)
				}
				if s.gpu < 0 && s.codec.Video() && !strings.Contains(l.Fallback, s.reason) {
					t.Fatalf("step %d: fallback %q, want %q", i+1, l.Fallback, s.reason)
				}
			}
			// Everything released: the counts are back to zero.
			for _, l := range leases {
				if l != nil {
					l.Release()
					l.Release() // twice is harmless
				}
			}
			st := p.Status()
			if st.CPU != 0 || st.Users != 0 {
				t.Fatalf("after release: %+v", st)
			}
			for _, d := range st.Devices {
				if d.Ours != 0 {
					t.Fatalf("after release: gpu%d has %d", d.Index, d.Ours)
				}
			}
		})
	}
}

func TestToCPU(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		codec   codec.Codec
		fillCPU bool
		refused string
	}{
		{name: "h264 moves", codec: codec.H264},
		{name: "h265 cannot", codec: codec.HEVC, refused: "h265 needs a GPU: no NVENC"},
		{name: "CPU full", cfg: Config{MaxPerGPU: 1, MaxCPU: 1}, codec: codec.H264, fillCPU: true, refused: "pool full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := Open(mockNVML(t, []*figures{{capH264: 100, capHEVC: 100}}), tc.cfg, quiet)
			l, err := p.Admit(1000, tc.codec)
			if err != nil || l.Where != GPU {
				t.Fatalf("%v %v", l, err)
			}
			if tc.fillCPU {
				if o, err := p.Admit(1001, codec.H264); err != nil || o.Where != CPU {
					t.Fatalf("%v %v", o, err)
				}
			}
			n, err := p.ToCPU(l, "no NVENC driver")
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("got %v, want %q", err, tc.refused)
				}
			} else if err != nil || n.Where != CPU || n.Fallback != "no NVENC driver" {
				t.Fatalf("%+v %v", n, err)
			}
			if d := p.Status().Devices[0]; d.Ours != 0 {
				t.Fatalf("GPU slot kept: %+v", d)
			}
		})
	}
}

func TestDisableGPUs(t *testing.T) {
	p := Open(mockNVML(t, []*figures{{capH264: 100}}), Config{}, quiet)
	p.DisableGPUs("no NVENC driver: libnvidia-encode.so.1 not found")
	l, err := p.Admit(1000, codec.H264)
	if err != nil || l.Where != CPU || !strings.Contains(l.Fallback, "libnvidia-encode") {
		t.Fatalf("%+v %v", l, err)
	}
}

func TestStatus(t *testing.T) {
	p := Open(mockNVML(t, []*figures{{capH264: 70, capHEVC: 40, util: 12, sessions: 2}, {capRet: nvml.ERROR_NOT_SUPPORTED}}), Config{}, quiet)
	if _, err := p.Admit(5, codec.H264); err != nil {
		t.Fatal(err)
	}
	st := p.Status()
	if len(st.Devices) != 1 {
		t.Fatalf("devices %+v", st.Devices)
	}
	d := st.Devices[0]
	if d.CapacityH264 != 70 || d.CapacityHEVC != 40 || d.Utilization != 12 || d.Sessions != 2 || d.Ours != 1 || d.Err != "" {
		t.Fatalf("%+v", d)
	}
	if !strings.HasPrefix(d.UUID, "GPU-") || d.Name == "" || d.PCIBusID == "" {
		t.Fatalf("identity %+v", d.Device)
	}
}

// The real go-nvml on this machine: without the NVIDIA driver the pool
// must say so and serve the CPU, not crash. Where a driver exists, the
// devices it lists must come with their identity.
func TestRealNVML(t *testing.T) {
	p := Open(nil, Config{}, quiet)
	defer p.Close()
	st := p.Status()
	if st.NoGPU != "" {
		t.Logf("no GPU here: %s", st.NoGPU)
		l, err := p.Admit(1000, codec.H264)
		if err != nil || l.Where != CPU || l.Fallback != st.NoGPU {
			t.Fatalf("%+v %v", l, err)
		}
		l.Release()
		return
	}
	for _, d := range st.Devices {
		t.Logf("gpu%d %s %s %s: %+v", d.Index, d.Name, d.UUID, d.PCIBusID, d)
		if d.UUID == "" || d.Err != "" {
			t.Errorf("gpu%d: %+v", d.Index, d)
		}
	}
}

var quiet = slog.New(slog.DiscardHandler)
