// SPDX-License-Identifier: GPL-2.0-or-later

package logind

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestParseProperty(t *testing.T) {
	for _, tc := range []struct {
		in    string
		scope bool
		want  map[string]any // D-Bus name -> value
		err   string
	}{
		{in: "NoNewPrivileges=yes", want: map[string]any{"NoNewPrivileges": true}},
		{in: " PrivateTmp = off ", want: map[string]any{"PrivateTmp": false}},
		{in: "ProtectSystem=strict", want: map[string]any{"ProtectSystem": "strict"}},
		{in: "ProtectSystem=true", want: map[string]any{"ProtectSystem": "yes"}},
		{in: "ProtectHome=read-only", want: map[string]any{"ProtectHome": "read-only"}},
		{in: "ReadWritePaths=/srv/a -/srv/b", want: map[string]any{"ReadWritePaths": []string{"/srv/a", "-/srv/b"}}},
		{in: "UMask=0077", want: map[string]any{"UMask": uint32(0o77)}},
		{in: "Nice=5", want: map[string]any{"Nice": int32(5)}},
		{in: "LimitNOFILE=1024:4096", want: map[string]any{"LimitNOFILE": uint64(4096), "LimitNOFILESoft": uint64(1024)}},
		{in: "LimitCORE=infinity", want: map[string]any{"LimitCORE": uint64(math.MaxUint64), "LimitCORESoft": uint64(math.MaxUint64)}},
		{in: "MemoryMax=4G", scope: true, want: map[string]any{"MemoryMax": uint64(4 << 30)}},
		{in: "MemoryHigh=512M", scope: true, want: map[string]any{"MemoryHigh": uint64(512 << 20)}},
		{in: "MemorySwapMax=infinity", scope: true, want: map[string]any{"MemorySwapMax": uint64(math.MaxUint64)}},
		{in: "TasksMax=400", scope: true, want: map[string]any{"TasksMax": uint64(400)}},
		{in: "CPUWeight=50", scope: true, want: map[string]any{"CPUWeight": uint64(50)}},
		{in: "CPUQuota=150%", scope: true, want: map[string]any{"CPUQuotaPerSecUSec": uint64(1_500_000)}},

		{in: "NoNewPrivileges", err: "want Name=value"},
		{in: "=yes", err: "want Name=value"},
		{in: "ExecStartPre=/bin/evil", err: "is not a setting sessions may be given"},
		{in: "User=root", err: "is not a setting sessions may be given"},
		{in: "CapabilityBoundingSet=", err: "is not a setting sessions may be given"},
		{in: "NoNewPrivileges=maybe", err: "not a boolean"},
		{in: "ProtectSystem=everything", err: "want one of"},
		{in: "ReadOnlyPaths=relative/path", err: "not an absolute path"},
		{in: "ReadOnlyPaths=", err: "no paths"},
		{in: "MemoryMax=50%", err: "not a size"},
		{in: "MemoryMax=99999999999T", err: "not a size"},
		{in: "MemoryMax=-1", err: "not a size"},
		{in: "TasksMax=lots", err: "not a number"},
		{in: "CPUWeight=0", err: "from 1 to 10000"},
		{in: "CPUWeight=10001", err: "from 1 to 10000"},
		{in: "CPUQuota=150", err: "percentage"},
		{in: "CPUQuota=0%", err: "percentage"},
		{in: "LimitNOFILE=4096:1024", err: "above hard limit"},
		{in: "UMask=0999", err: "octal"},
		{in: "Nice=-21", err: "-20 to 19"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParseProperty(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.OnScope() != tc.scope {
				t.Errorf("OnScope %v", p.OnScope())
			}
			service, scope := split([]Property{p})
			got := map[string]any{}
			for _, dp := range append(service, scope...) {
				got[dp.Name] = dp.Value.Value()
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, want %#v", got, tc.want)
			}
			if (len(scope) > 0) != tc.scope || (len(service) > 0) == tc.scope {
				t.Errorf("split: service %v scope %v", service, scope)
			}
		})
	}
}

func TestDefaultProperties(t *testing.T) {
	if len(defaultProperties) != len(DefaultProperties) {
		t.Fatalf("%d defaults parsed of %d", len(defaultProperties), len(DefaultProperties))
	}
	for _, p := range defaultProperties {
		if p.OnScope() {
			t.Errorf("default %s is a resource setting: defaults only sandbox", p.Assignment)
		}
	}
	mustParse := func(a string) Property {
		p, err := ParseProperty(a)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	names := func(ps []Property) map[string]string {
		m := map[string]string{}
		for _, p := range ps {
			if _, dup := m[p.Name()]; dup {
				t.Errorf("%s twice", p.Name())
			}
			m[p.Name()] = p.Assignment
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		admin []string
		want  map[string]string // names whose assignment is checked
		count int
	}{
		{"none", nil, map[string]string{"ProtectSystem": "ProtectSystem=full", "ProtectProc": "ProtectProc=invisible"}, len(DefaultProperties)},
		{"override", []string{"ProtectSystem=no", "RestrictRealtime=false"},
			map[string]string{"ProtectSystem": "ProtectSystem=no", "RestrictRealtime": "RestrictRealtime=false", "LockPersonality": "LockPersonality=yes"},
			len(DefaultProperties)},
		{"addition", []string{"MemoryMax=4G", "NoNewPrivileges=yes"},
			map[string]string{"MemoryMax": "MemoryMax=4G", "NoNewPrivileges": "NoNewPrivileges=yes", "ProtectClock": "ProtectClock=yes"},
			len(DefaultProperties) + 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var admin []Property
			for _, a := range tc.admin {
				admin = append(admin, mustParse(a))
			}
			got := WithDefaults(admin)
			m := names(got)
			if len(got) != tc.count {
				t.Errorf("%d properties, want %d: %v", len(got), tc.count, m)
			}
			for n, a := range tc.want {
				if m[n] != a {
					t.Errorf("%s: %q, want %q", n, m[n], a)
				}
			}
			// The admin's come last, as written: systemd applies the last.
			for i, p := range admin {
				if got[len(got)-len(admin)+i].Assignment != p.Assignment {
					t.Errorf("admin's setting %d not in place: %v", i, got)
				}
			}
		})
	}
}
