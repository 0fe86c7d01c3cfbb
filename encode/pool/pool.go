// SPDX-License-Identifier: GPL-2.0-or-later

// Package pool decides where each new encoding context runs: on the
// least-loaded NVENC-capable GPU that NVML reports, or on the CPU (x264,
// libjpeg-turbo) when there is no GPU, the GPUs are full, or the user has
// used their share. It counts contexts per GPU and per user and refuses
// past the configured limits instead of failing mid-stream.
//
// NVML is reached through go-nvml, which dlopens libnvidia-ml.so.1 at
// Init: without the driver the pool reports "no GPU" and serves the CPU.
package pool

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/xpra-proxy/xpra-proxy/encode/codec"
)

// Config holds the limits. Zero means no limit of ours for the Max*
// counts (NVML's capacity still applies to GPUs) and 100 % for
// MaxUtilization.
type Config struct {
	// MaxPerGPU bounds the contexts this pool places on one GPU (consumer
	// drivers cap concurrent NVENC sessions; so may the admin).
	MaxPerGPU int
	// MaxGPUPerUser bounds one uid's GPU contexts; past it the user's
	// new contexts go to the CPU, so one user cannot take every GPU slot.
	MaxGPUPerUser int
	// MaxCPU bounds x264 contexts in total; past it video is refused and
	// the caller sends what it would have sent without the pool.
	MaxCPU int
	// MaxPerUser bounds one uid's contexts of every kind.
	MaxPerUser int
	// MaxUtilization (percent) keeps new contexts off a GPU whose encoder
	// is busier than this.
	MaxUtilization uint32
}

// Where a context runs.
type Where uint8

// CPU or GPU.
const (
	CPU Where = 1
	GPU Where = 2
)

func (w Where) String() string {
	if w == GPU {
		return "gpu"
	}
	return "cpu"
}

// Device is one GPU as discovered.
type Device struct {
	Index    int
	UUID     string
	Name     string
	PCIBusID string
}

// DeviceStatus is a device with its live figures and our count.
type DeviceStatus struct {
	Device
	// CapacityH264 and CapacityHEVC are NVML's remaining encoder capacity
	// in percent; -1 when the query failed.
	CapacityH264, CapacityHEVC int
	Utilization                uint32 // encoder utilization, percent
	Sessions                   int    // NVENC sessions of every process
	Ours                       int    // contexts this pool placed there
	Err                        string // why the figures are missing
}

// Status is the pool at one moment.
type Status struct {
	NoGPU   string // why no GPU is used; "" when GPUs are
	Devices []DeviceStatus
	CPU     int // x264 contexts
	Users   int // uids holding contexts
}

// RefusedError is an admission refusal: the caller should send frames
// as it would without the pool.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "encoder pool: refused: " + e.Reason }

// ErrRefused matches every RefusedError with errors.Is.
var ErrRefused = errors.New("encoder pool: refused")

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

type gpu struct {
	Device
	dev  nvml.Device
	ours int
}

type usage struct{ all, gpu int }

// Pool is safe for concurrent use.
type Pool struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	lib     nvml.Interface
	inited  bool
	gpus    []*gpu
	noGPU   string
	cpu     int
	users   map[uint32]*usage
	leaseID uint64
}

// Open discovers the GPUs through lib (nvml.New() when nil). It never
// fails: whatever goes wrong with NVML leaves a pool that serves the
// CPU and says why in Status().NoGPU.
func Open(lib nvml.Interface, cfg Config, log *slog.Logger) *Pool {
	if log == nil {
		log = slog.Default()
	}
	if lib == nil {
		lib = nvml.New()
	}
	p := &Pool{cfg: cfg, log: log, lib: lib, users: map[uint32]*usage{}}
	p.noGPU = p.discover()
	if p.noGPU != "" {
		log.Info("encoder pool: CPU only", "reason", p.noGPU)
	} else {
		for _, g := range p.gpus {
			log.Info("encoder pool: GPU", "index", g.Index, "name", g.Name, "uuid", g.UUID, "pci", g.PCIBusID)
		}
	}
	return p
}

// discover fills p.gpus and returns why there is none usable.
func (p *Pool) discover() string {
	switch ret := p.lib.Init(); ret {
	case nvml.SUCCESS:
		p.inited = true
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return "no GPU: NVML library libnvidia-ml.so.1 not found (no NVIDIA driver)"
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return "no GPU: NVIDIA kernel driver not loaded"
	default:
		return "no GPU: NVML init: " + ret.Error()
	}
	n, ret := p.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return "no GPU: NVML device count: " + ret.Error()
	}
	var skipped []string
	for i := 0; i < n; i++ {
		dev, ret := p.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			skipped = append(skipped, fmt.Sprintf("gpu%d: %v", i, ret))
			continue
		}
		// A device without NVENC (datacenter compute parts) answers
		// NOT_SUPPORTED here.
		if _, ret := dev.GetEncoderCapacity(nvml.ENCODER_QUERY_H264); ret != nvml.SUCCESS {
			skipped = append(skipped, fmt.Sprintf("gpu%d: no encoder (%v)", i, ret))
			continue
		}
		g := &gpu{dev: dev, Device: Device{Index: i}}
		if s, ret := dev.GetName(); ret == nvml.SUCCESS {
			g.Name = s
		}
		if s, ret := dev.GetUUID(); ret == nvml.SUCCESS {
			g.UUID = s
		}
		if pci, ret := dev.GetPciInfo(); ret == nvml.SUCCESS {
			g.PCIBusID = busID(pci)
		}
		p.gpus = append(p.gpus, g)
	}
	if len(p.gpus) == 0 {
		if n == 0 {
			return "no GPU: NVML sees no device"
		}
		return "no GPU with an encoder: " + strings.Join(skipped, "; ")
	}
	for _, s := range skipped {
		p.log.Info("encoder pool: GPU skipped", "why", s)
	}
	return ""
}

func busID(pci nvml.PciInfo) string {
	var b []byte
	for _, c := range pci.BusId {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	if len(b) > 0 {
		return string(b)
	}
	return fmt.Sprintf("%08x:%02x:%02x.0", pci.Domain, pci.Bus, pci.Device)
}

// Close shuts NVML down; leases still held stay valid for accounting.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inited {
		p.lib.Shutdown()
		p.inited = false
	}
}

// NoGPU says why no GPU is used ("" when GPUs are), without querying
// them.
func (p *Pool) NoGPU() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.noGPU
}

// DisableGPUs makes every later placement CPU, e.g. when NVML sees GPUs
// but the NVENC library cannot be loaded.
func (p *Pool) DisableGPUs(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.noGPU == "" {
		p.noGPU = reason
		p.log.Info("encoder pool: GPUs disabled", "reason", reason)
	}
}

// Lease is one admitted context. Release it when the context closes.
type Lease struct {
	p     *Pool
	id    uint64
	uid   uint32
	codec codec.Codec
	// Where the context runs; Device is set for GPU.
	Where  Where
	Device *Device
	// Fallback says why a video context went to the CPU ("" on a GPU and
	// for JPEG, which always runs on the CPU).
	Fallback string
	once     sync.Once
	g        *gpu
}

// Release returns the slot; calling it again does nothing.
func (l *Lease) Release() {
	l.once.Do(func() {
		p := l.p
		p.mu.Lock()
		defer p.mu.Unlock()
		p.releaseLocked(l)
	})
}

func (p *Pool) releaseLocked(l *Lease) {
	u := p.users[l.uid]
	u.all--
	switch {
	case l.g != nil:
		l.g.ours--
		u.gpu--
	case l.codec.Video():
		p.cpu--
	}
	if u.all == 0 {
		delete(p.users, l.uid)
	}
}

// Admit places a new context of uid for c. A *RefusedError says why none
// can be had.
func (p *Pool) Admit(uid uint32, c codec.Codec) (*Lease, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.users[uid]
	if u == nil {
		u = &usage{}
	}
	if p.cfg.MaxPerUser > 0 && u.all >= p.cfg.MaxPerUser {
		return nil, &RefusedError{fmt.Sprintf("uid %d holds %d contexts, the limit per user", uid, u.all)}
	}
	l := &Lease{p: p, uid: uid, codec: c, Where: CPU}
	switch c {
	case codec.JPEG:
		// Stateless and cheap: CPU, counted per user only.
	case codec.H264, codec.HEVC:
		g, why := p.placeLocked(u, c)
		if g != nil {
			l.Where, l.g = GPU, g
			dev := g.Device
			l.Device = &dev
			break
		}
		if c == codec.HEVC {
			return nil, &RefusedError{"h265 needs a GPU: " + why}
		}
		if p.cfg.MaxCPU > 0 && p.cpu >= p.cfg.MaxCPU {
			return nil, &RefusedError{fmt.Sprintf("pool full: %s, and %d CPU contexts, the limit", why, p.cpu)}
		}
		l.Fallback = why
	default:
		return nil, &RefusedError{fmt.Sprintf("codec %v not served", c)}
	}
	p.commitLocked(u, l)
	return l, nil
}

func (p *Pool) commitLocked(u *usage, l *Lease) {
	p.leaseID++
	l.id = p.leaseID
	u.all++
	switch {
	case l.g != nil:
		l.g.ours++
		u.gpu++
	case l.codec.Video():
		p.cpu++
	}
	p.users[l.uid] = u
}

// ToCPU moves a GPU lease to the CPU, when opening the GPU encoder failed
// after placement. The old lease is released either way.
func (p *Pool) ToCPU(l *Lease, reason string) (*Lease, error) {
	l.Release()
	if l.codec != codec.H264 {
		return nil, &RefusedError{fmt.Sprintf("%v needs a GPU: %s", l.codec, reason)}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.users[l.uid]
	if u == nil {
		u = &usage{}
	}
	if p.cfg.MaxCPU > 0 && p.cpu >= p.cfg.MaxCPU {
		return nil, &RefusedError{fmt.Sprintf("pool full: %s, and %d CPU contexts, the limit", reason, p.cpu)}
	}
	n := &Lease{p: p, uid: l.uid, codec: l.codec, Where: CPU, Fallback: reason}
	p.commitLocked(u, n)
	return n, nil
}

type candidate struct {
	g        *gpu
	load     int // percent of the encoder in use, by the worse measure
	sessions int
}

// placeLocked returns the least-loaded GPU able to take one more context
// of c, or nil and why not.
func (p *Pool) placeLocked(u *usage, c codec.Codec) (*gpu, string) {
	if p.noGPU != "" {
		return nil, p.noGPU
	}
	if p.cfg.MaxGPUPerUser > 0 && u.gpu >= p.cfg.MaxGPUPerUser {
		return nil, fmt.Sprintf("user's GPU share used (%d contexts)", u.gpu)
	}
	query := nvml.ENCODER_QUERY_H264
	if c == codec.HEVC {
		query = nvml.ENCODER_QUERY_HEVC
	}
	var cands []candidate
	var full []string
	for _, g := range p.gpus {
		if p.cfg.MaxPerGPU > 0 && g.ours >= p.cfg.MaxPerGPU {
			full = append(full, fmt.Sprintf("gpu%d: %d contexts, the limit", g.Index, g.ours))
			continue
		}
		capacity, ret := g.dev.GetEncoderCapacity(query)
		if ret != nvml.SUCCESS {
			full = append(full, fmt.Sprintf("gpu%d: capacity: %v", g.Index, ret))
			continue
		}
		if capacity <= 0 {
			full = append(full, fmt.Sprintf("gpu%d: no encoder capacity left", g.Index))
			continue
		}
		util, _, ret := g.dev.GetEncoderUtilization()
		if ret != nvml.SUCCESS {
			full = append(full, fmt.Sprintf("gpu%d: utilization: %v", g.Index, ret))
			continue
		}
		maxUtil := p.cfg.MaxUtilization
		if maxUtil == 0 {
			maxUtil = 100
		}
		if util > maxUtil || util >= 100 {
			full = append(full, fmt.Sprintf("gpu%d: encoder %d%% busy", g.Index, util))
			continue
		}
		sessions, ret := g.dev.GetEncoderSessions()
		if ret != nvml.SUCCESS {
			full = append(full, fmt.Sprintf("gpu%d: sessions: %v", g.Index, ret))
			continue
		}
		// Our contexts admitted but not yet opened are not in NVML's list.
		n := max(len(sessions), g.ours)
		cands = append(cands, candidate{g: g, load: max(int(util), 100-capacity), sessions: n})
	}
	if len(cands) == 0 {
		return nil, "GPUs full: " + strings.Join(full, "; ")
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.load != b.load {
			return a.load < b.load
		}
		return a.sessions < b.sessions
	})
	return cands[0].g, ""
}

// Contexts is how many leases are held now, of every kind and user:
// cheap, unlike Status, which asks NVML.
func (p *Pool) Contexts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, u := range p.users {
		n += u.all
	}
	return n
}

// Status reads the live figures of every GPU.
func (p *Pool) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Status{NoGPU: p.noGPU, CPU: p.cpu, Users: len(p.users)}
	for _, g := range p.gpus {
		d := DeviceStatus{Device: g.Device, Ours: g.ours, CapacityH264: -1, CapacityHEVC: -1}
		var errs []string
		if v, ret := g.dev.GetEncoderCapacity(nvml.ENCODER_QUERY_H264); ret == nvml.SUCCESS {
			d.CapacityH264 = v
		} else {
			errs = append(errs, "h264 capacity: "+ret.Error())
		}
		if v, ret := g.dev.GetEncoderCapacity(nvml.ENCODER_QUERY_HEVC); ret == nvml.SUCCESS {
			d.CapacityHEVC = v
		}
		if v, _, ret := g.dev.GetEncoderUtilization(); ret == nvml.SUCCESS {
			d.Utilization = v
		} else {
			errs = append(errs, "utilization: "+ret.Error())
		}
		if s, ret := g.dev.GetEncoderSessions(); ret == nvml.SUCCESS {
			d.Sessions = len(s)
		} else {
			errs = append(errs, "sessions: "+ret.Error())
		}
		d.Err = strings.Join(errs, "; ")
		st.Devices = append(st.Devices, d)
	}
	return st
}
