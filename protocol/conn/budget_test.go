// SPDX-License-Identifier: GPL-2.0-or-later

package conn

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/xpra-proxy/xpra-proxy/internal/hostile"
	"github.com/xpra-proxy/xpra-proxy/internal/shared"
	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/compress"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// preauthLimit is the supervisor's default preauth-packet-limit.
const preauthLimit = 1 << 20

// Each amplification input is refused by the budget a pre-auth packet
// limit gives, quickly, having allocated no more than the budget allows
// (plus the decompressor's own state). Without the budget the first one
// cost a pre-auth process ~285 MB.
func TestAmplificationRefused(t *testing.T) {
	inputs, err := hostile.Inputs()
	if err != nil {
		t.Fatal(err)
	}
	lim := budget.ForPacket(preauthLimit)
	for _, in := range inputs {
		t.Run(in.Name, func(t *testing.T) {
			c := New(rw{bytes.NewReader(in.Wire), io.Discard})
			c.SetPacketLimit(preauthLimit)
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := c.ReadPacket()
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			// 4 MiB payloads stop at the decompressed limit, smaller ones
			// at the budget.
			if !errors.Is(err, budget.ErrExceeded) && !errors.Is(err, compress.ErrTooLarge) {
				t.Fatalf("%d wire bytes: got %v, want a budget refusal", len(in.Wire), err)
			}
			allocated := after.TotalAlloc - before.TotalAlloc
			mallocs := after.Mallocs - before.Mallocs
			t.Logf("%d wire bytes, %d empty lists: refused in %v after %d bytes in %d allocations: %v",
				len(in.Wire), in.Lists, took, allocated, mallocs, err)
			// The budget is charged before each allocation; what is not
			// charged is the decompressor's state (zlib ~45 KB, brotli's
			// tables), error formatting, and for brotli the part of its
			// ring buffer beyond the packet limit (a 4 MiB window).
			uncharged := uint64(1 << 20)
			if strings.Contains(in.Name, "brotli") {
				uncharged += 4 << 20
			}
			if limit := uint64(lim.Bytes) + uncharged; allocated > limit {
				t.Errorf("allocated %d bytes, budget %d", allocated, lim.Bytes)
			}
			if mallocs > uint64(lim.Items)+1000 {
				t.Errorf("%d allocations for at most %d values", mallocs, lim.Items)
			}
			if took > time.Second {
				t.Errorf("refusal took %v", took)
			}
		})
	}
}

// Every packet of the real captures (3.1 clients, servers and the HTML5
// client, hellos included) decodes within the budget of a 1 MiB packet
// limit, with room to spare.
func TestTracesWithinPreauthBudget(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(shared.Traces(t), "*.bin"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no traces: %v", err)
	}
	lim := budget.ForPacket(preauthLimit)
	var most, mostItems int64
	var mostName string
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		r := wire.NewReader(bytes.NewReader(data))
		r.SetMaxIndex(wire.MaxIndexV3)
		for {
			f, err := r.ReadFrame()
			if err != nil {
				break // end of the capture, or a plain-text line or http
			}
			if f.Header.Index > 0 {
				continue
			}
			m := budget.New(lim)
			payload, err := compress.DecompressWithin(f.Header.Level, f.Payload, preauthLimit, m)
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(path), err)
			}
			if _, err := DecodeWithin(f.Header.Encoding(), payload, m); err != nil {
				if errors.Is(err, budget.ErrExceeded) {
					t.Fatalf("%s: a real packet over the budget: %v", filepath.Base(path), err)
				}
				continue // a capture cut mid-packet
			}
			if b, items := m.Used(); b > most {
				most, mostItems, mostName = b, items, filepath.Base(path)
			}
		}
	}
	t.Logf("largest real packet: %d bytes, %d values (%s); budget %d bytes, %d values",
		most, mostItems, mostName, lim.Bytes, lim.Items)
	if most == 0 {
		t.Fatal("no packet decoded")
	}
}
