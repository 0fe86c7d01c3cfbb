// SPDX-License-Identifier: GPL-2.0-or-later

package handover_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/handover"
	"github.com/xpra-proxy/xpra-proxy/internal/fuzzcheck"
	"github.com/xpra-proxy/xpra-proxy/internal/tracehello"
	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// FuzzUnmarshal: the relay worker (the session's user) reads the
// handover the pre-auth process wrote, and a compromised pre-auth process
// can write anything there. Nothing may panic, a blob must not cost the
// relay much more memory than its own size, and what is accepted
// marshals back to a blob that reads as the same state. Seeds: the
// handovers of the captures' real hellos.
func FuzzUnmarshal(f *testing.F) {
	for i, h := range tracehello.Hellos(f) {
		st := handover.State{Hello: h, Encoding: wire.Encoding(i % 3), Leftover: []byte("P\x01"), Listener: "tcp", Peer: "127.0.0.1:4711"}
		b, err := st.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Item-count amplification (issue 12's empty lists): 20,000 bytes of
	// lists in the hello.
	empty := make([]any, 20000)
	for i := range empty {
		empty[i] = []any{}
	}
	b, err := handover.State{Hello: value.Dict{{Key: "x", Value: empty}}}.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, in []byte) {
		var st handover.State
		var err error
		// Budget's bytes, and room for what it does not count (the
		// blob's own dict, errors).
		fuzzcheck.Bounded(t, uint64(handover.Budget.Bytes)+4<<20, func() {
			st, err = handover.Unmarshal(in)
		})
		if err != nil {
			return
		}
		b, err := st.Marshal()
		if err != nil {
			t.Fatalf("re-marshalling %d bytes: %v", len(in), err)
		}
		// rencodeplus widens float32 to float64, so the first re-marshal
		// may differ from the input; from then on the blob is a fixed point.
		again, err := handover.Unmarshal(b)
		if err != nil {
			t.Fatalf("reading our own %d-byte handover: %v", len(b), err)
		}
		b2, err := again.Marshal()
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("round trip changed the handover (%d bytes, then %d): %v", len(b), len(b2), err)
		}
		if again.Encoding != st.Encoding || again.Listener != st.Listener || again.Peer != st.Peer || !bytes.Equal(again.Leftover, st.Leftover) {
			t.Fatalf("round trip changed the state: %+v, then %+v", st, again)
		}
	})
}

// Every real hello passes within Budget with room to spare (go test -v
// logs what each takes).
func TestRealHellosWithinBudget(t *testing.T) {
	for _, h := range tracehello.Hellos(t) {
		b, err := handover.State{Hello: h}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m := budget.New(handover.Budget)
		if _, err := rencode.DecodeWithin(b, rencode.Plus, m); err != nil {
			t.Fatalf("%d-byte handover: %v", len(b), err)
		}
		bytes, items := m.Used()
		t.Logf("%d bytes of handover: %d bytes, %d values", len(b), bytes, items)
		if l := handover.Budget; bytes*4 > l.Bytes || items*4 > l.Items {
			t.Errorf("%d-byte handover uses %d bytes and %d values of %+v", len(b), bytes, items, l)
		}
		if _, err := handover.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
	}
}

// A handover of a million empty lists is refused within the budget:
// without one, decoding it took 1.9 MB for 20,000 of them.
func TestUnmarshalBudget(t *testing.T) {
	empty := make([]any, 1<<20)
	for i := range empty {
		empty[i] = []any{}
	}
	b, err := handover.State{Hello: value.Dict{{Key: "x", Value: empty}}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	fuzzcheck.Bounded(t, uint64(handover.Budget.Bytes)+4<<20, func() {
		if _, err := handover.Unmarshal(b); !errors.Is(err, budget.ErrExceeded) {
			t.Errorf("%d bytes of empty lists: %v, want the budget's refusal", len(b), err)
		}
	})
}
