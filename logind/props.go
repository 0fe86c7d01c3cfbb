// SPDX-License-Identifier: GPL-2.0-or-later

package logind

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// Property is one unit setting the admin configures for sessions, in
// systemd's unit-file syntax ("MemoryMax=4G", "ProtectSystem=full"). Made by
// ParseProperty, which knows where each one takes effect: sandboxing on the
// session's service (per process, inherited by everything the leader starts),
// resource control on the session's scope (per cgroup: pam_systemd moves the
// session there).
type Property struct {
	Assignment string // as the admin wrote it, for messages
	dbus       sddbus.Property
	extra      []sddbus.Property
	scope      bool
}

// OnScope reports whether the property is applied to the session's scope
// rather than to its service.
func (p Property) OnScope() bool { return p.scope }

type propKind int

const (
	kindBool       propKind = iota // b
	kindString                     // s, from a fixed set of values
	kindPaths                      // as, absolute paths separated by spaces
	kindBytes                      // t, bytes with K/M/G/T suffix (base 1024) or "infinity"
	kindCount                      // t, a number or "infinity"
	kindWeight                     // t, 1..10000
	kindPercentCPU                 // CPUQuota=NN% -> CPUQuotaPerSecUSec (t)
	kindRlimit                     // t, hard (Name) and soft (NameSoft): "N" or "soft:hard", "infinity"
	kindUmask                      // u, octal
	kindNice                       // i, -20..19
)

type propSpec struct {
	kind   propKind
	scope  bool
	values []string // kindString: the accepted values
}

// The properties sessions may be given. A name that is not here is refused
// with an error instead of being passed on unchecked, so a typo in the
// configuration shows at start-up, not when a user's session fails to start.
// Capability and system-call filters are left out on purpose: the leader
// needs setuid/setgid and audit capabilities and the bus to open the session.
var propSpecs = map[string]propSpec{
	// sandboxing, on the service
	"NoNewPrivileges":       {kind: kindBool},
	"PrivateTmp":            {kind: kindBool},
	"PrivateDevices":        {kind: kindBool},
	"PrivateIPC":            {kind: kindBool},
	"ProtectKernelTunables": {kind: kindBool},
	"ProtectKernelModules":  {kind: kindBool},
	"ProtectKernelLogs":     {kind: kindBool},
	"ProtectControlGroups":  {kind: kindBool},
	"ProtectClock":          {kind: kindBool},
	"ProtectHostname":       {kind: kindBool},
	"RestrictRealtime":      {kind: kindBool},
	"RestrictSUIDSGID":      {kind: kindBool},
	"LockPersonality":       {kind: kindBool},
	"ProtectSystem":         {kind: kindString, values: []string{"no", "yes", "full", "strict"}},
	"ProtectHome":           {kind: kindString, values: []string{"no", "yes", "read-only", "tmpfs"}},
	"ProtectProc":           {kind: kindString, values: []string{"default", "noaccess", "invisible", "ptraceable"}},
	"ReadOnlyPaths":         {kind: kindPaths},
	"ReadWritePaths":        {kind: kindPaths},
	"InaccessiblePaths":     {kind: kindPaths},
	"UMask":                 {kind: kindUmask},
	"Nice":                  {kind: kindNice},
	"LimitNOFILE":           {kind: kindRlimit},
	"LimitNPROC":            {kind: kindRlimit},
	"LimitCORE":             {kind: kindRlimit},
	"LimitAS":               {kind: kindRlimit},
	"LimitDATA":             {kind: kindRlimit},
	"LimitFSIZE":            {kind: kindRlimit},
	"LimitMEMLOCK":          {kind: kindRlimit},
	// resource control, on the scope
	"MemoryMax":     {kind: kindBytes, scope: true},
	"MemoryHigh":    {kind: kindBytes, scope: true},
	"MemorySwapMax": {kind: kindBytes, scope: true},
	"TasksMax":      {kind: kindCount, scope: true},
	"CPUWeight":     {kind: kindWeight, scope: true},
	"IOWeight":      {kind: kindWeight, scope: true},
	"CPUQuota":      {kind: kindPercentCPU, scope: true},
}

// DefaultProperties harden every session's unit; an admin's
// session-properties setting of the same name replaces the default
// (WithDefaults). They take from the session only what a remote X desktop
// does not use, and each was checked against a real xpra 3.1.3 session
// (Xvfb, dbus-launch, pulseaudio) in the systemd testbed. Left out on
// purpose, for admins to add:
//   - NoNewPrivileges: sudo, su and pkexec in the session's terminals, and
//     setuid X wrappers (Xorg.wrap for xpra's Xdummy), would stop working.
//   - PrivateTmp: /tmp/.X11-unix must be the one X clients elsewhere see.
//   - PrivateDevices: GPUs (/dev/dri), webcams (v4l2loopback), FUSE.
//   - PrivateIPC: MIT-SHM with X clients outside the session.
//   - ProtectHome: it is the user's own desktop.
//   - namespaces and the system-call architecture (not settable here):
//     browsers' sandboxes use user namespaces, some programs are 32-bit.
//
// A root process in the session (sudo) still cannot write /usr, /boot or
// /etc, load kernel modules, set the clock or kernel tunables, or read the
// kernel log; "ProtectSystem=no" and the like lift that for a machine
// administered from its sessions.
var DefaultProperties = []string{
	"ProtectSystem=full",
	"ProtectKernelTunables=yes",
	"ProtectKernelModules=yes",
	"ProtectKernelLogs=yes",
	"ProtectControlGroups=yes",
	"ProtectClock=yes",
	"ProtectHostname=yes",
	"ProtectProc=invisible",
	"RestrictRealtime=yes",
	"RestrictSUIDSGID=yes",
	"LockPersonality=yes",
}

// defaultProperties is DefaultProperties parsed; a bad entry is a
// programming error that TestDefaultProperties catches.
var defaultProperties = func() []Property {
	var ps []Property
	for _, a := range DefaultProperties {
		p, err := ParseProperty(a)
		if err != nil {
			panic(err)
		}
		ps = append(ps, p)
	}
	return ps
}()

// Name is the setting's name, as in unit files ("MemoryMax").
func (p Property) Name() string {
	name, _, _ := strings.Cut(p.Assignment, "=")
	return name
}

// WithDefaults is DefaultProperties with the admin's settings applied: a
// setting of the admin's replaces the default of the same name, the rest
// follow in the admin's order.
func WithDefaults(admin []Property) []Property {
	set := map[string]bool{}
	for _, p := range admin {
		set[p.Name()] = true
	}
	var out []Property
	for _, p := range defaultProperties {
		if !set[p.Name()] {
			out = append(out, p)
		}
	}
	return append(out, admin...)
}

// ParseProperty parses one "Name=value" setting.
func ParseProperty(assignment string) (Property, error) {
	name, value, ok := strings.Cut(assignment, "=")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || name == "" {
		return Property{}, fmt.Errorf("session property %q: want Name=value", assignment)
	}
	spec, known := propSpecs[name]
	if !known {
		return Property{}, fmt.Errorf("session property %q: %s is not a setting sessions may be given", assignment, name)
	}
	p := Property{Assignment: name + "=" + value, scope: spec.scope}
	bad := func(why string) (Property, error) {
		return Property{}, fmt.Errorf("session property %q: %s", assignment, why)
	}
	switch spec.kind {
	case kindBool:
		b, err := parseBool(value)
		if err != nil {
			return bad(err.Error())
		}
		p.dbus = prop(name, b)
	case kindString:
		v := value
		if b, err := parseBool(value); err == nil { // systemd accepts yes/true/1 alike
			v = map[bool]string{true: "yes", false: "no"}[b]
		}
		found := false
		for _, ok := range spec.values {
			found = found || v == ok
		}
		if !found {
			return bad("want one of " + strings.Join(spec.values, ", "))
		}
		p.dbus = prop(name, v)
	case kindPaths:
		paths := strings.Fields(value)
		for _, path := range paths {
			if !strings.HasPrefix(strings.TrimLeft(path, "-+"), "/") {
				return bad(fmt.Sprintf("%q is not an absolute path", path))
			}
		}
		if len(paths) == 0 {
			return bad("no paths")
		}
		p.dbus = prop(name, paths)
	case kindBytes:
		n, err := parseBytes(value)
		if err != nil {
			return bad(err.Error())
		}
		p.dbus = prop(name, n)
	case kindCount:
		n, err := parseCount(value)
		if err != nil {
			return bad(err.Error())
		}
		p.dbus = prop(name, n)
	case kindWeight:
		n, err := strconv.ParseUint(value, 10, 64)
		if err != nil || n < 1 || n > 10000 {
			return bad("want a weight from 1 to 10000")
		}
		p.dbus = prop(name, n)
	case kindPercentCPU:
		pct, ok := strings.CutSuffix(value, "%")
		n, err := strconv.ParseUint(pct, 10, 32)
		if !ok || err != nil || n == 0 {
			return bad("want a percentage such as 150%")
		}
		// systemd's CPUQuota=100% is one CPU: a second of CPU time per second.
		p.dbus = prop("CPUQuotaPerSecUSec", n*10000)
	case kindRlimit:
		soft, hard, err := parseRlimit(value)
		if err != nil {
			return bad(err.Error())
		}
		// Two D-Bus properties for one setting, as systemd-run sends them:
		// the hard limit under the name, the soft one under NameSoft.
		p.dbus = prop(name, hard)
		p.extra = []sddbus.Property{prop(name+"Soft", soft)}
	case kindUmask:
		n, err := strconv.ParseUint(value, 8, 32)
		if err != nil || n > 0o777 {
			return bad("want an octal mode such as 0077")
		}
		p.dbus = prop(name, uint32(n))
	case kindNice:
		n, err := strconv.Atoi(value)
		if err != nil || n < -20 || n > 19 {
			return bad("want a nice level from -20 to 19")
		}
		p.dbus = prop(name, int32(n))
	}
	return p, nil
}

func prop(name string, v any) sddbus.Property {
	return sddbus.Property{Name: name, Value: dbus.MakeVariant(v)}
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "y", "true", "t", "on":
		return true, nil
	case "0", "no", "n", "false", "f", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean", s)
}

func parseCount(s string) (uint64, error) {
	if s == "infinity" {
		return math.MaxUint64, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == math.MaxUint64 {
		return 0, fmt.Errorf("%q is not a number or infinity", s)
	}
	return n, nil
}

func parseBytes(s string) (uint64, error) {
	if s == "infinity" {
		return math.MaxUint64, nil
	}
	mult := uint64(1)
	if s != "" {
		switch s[len(s)-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > (math.MaxUint64-1)/mult {
		return 0, fmt.Errorf("%q is not a size such as 512M, 4G or infinity", s)
	}
	return n * mult, nil
}

func parseRlimit(s string) (soft, hard uint64, err error) {
	softS, hardS, two := strings.Cut(s, ":")
	if !two {
		hardS = softS
	}
	if soft, err = parseCount(softS); err != nil {
		return 0, 0, err
	}
	if hard, err = parseCount(hardS); err != nil {
		return 0, 0, err
	}
	if soft > hard {
		return 0, 0, fmt.Errorf("soft limit %s above hard limit %s", softS, hardS)
	}
	return soft, hard, nil
}

// split separates service and scope settings, as D-Bus properties.
func split(props []Property) (service, scope []sddbus.Property) {
	for _, p := range props {
		if p.dbus.Name == "" { // not made by ParseProperty
			continue
		}
		ps := append([]sddbus.Property{p.dbus}, p.extra...)
		if p.scope {
			scope = append(scope, ps...)
		} else {
			service = append(service, ps...)
		}
	}
	return service, scope
}
