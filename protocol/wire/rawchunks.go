// SPDX-License-Identifier: GPL-2.0-or-later

package wire

import "fmt"

// RawChunks holds the raw chunks (index > 0) that precede a main chunk and
// replace items of its decoded packet (PROTOCOL.md §1.2 steps 7-8).
type RawChunks struct {
	n     int
	index [MaxPendingRaw]byte
	data  [MaxPendingRaw][]byte
}

// Len is the number of chunks waiting for their main chunk.
func (rc *RawChunks) Len() int { return rc.n }

// Add stores a raw chunk's payload under its index.
func (rc *RawChunks) Add(index byte, data []byte) error {
	if index == 0 {
		return fmt.Errorf("raw chunk with index 0")
	}
	for i := 0; i < rc.n; i++ {
		if rc.index[i] == index {
			return fmt.Errorf("duplicate raw packet at index %d", index)
		}
	}
	if rc.n == MaxPendingRaw {
		return fmt.Errorf("too many raw packets: more than %d before the main chunk", MaxPendingRaw)
	}
	rc.index[rc.n], rc.data[rc.n] = index, data
	rc.n++
	return nil
}

// Apply replaces each stored item of packet with its raw bytes and clears the
// store. An index beyond the packet is a protocol error.
func (rc *RawChunks) Apply(packet []any) error {
	defer rc.Reset()
	for i := 0; i < rc.n; i++ {
		idx := int(rc.index[i])
		if idx >= len(packet) {
			return fmt.Errorf("raw chunk index %d beyond the packet's %d items", idx, len(packet))
		}
		packet[idx] = rc.data[i]
	}
	return nil
}

// Reset forgets the stored chunks.
func (rc *RawChunks) Reset() {
	clear(rc.data[:])
	rc.n = 0
}
