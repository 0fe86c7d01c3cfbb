// SPDX-License-Identifier: GPL-2.0-or-later

package conn

import (
	"fmt"

	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// PeekType reads only the packet type at the start of an uncompressed main
// chunk payload, so a relay can route a packet without decoding it. It
// returns the name, or the integer alias (name "") for 3.1 aliased types.
func PeekType(e wire.Encoding, payload []byte) (name string, alias int64, err error) {
	switch e {
	case wire.Rencode, wire.RencodePlus:
		return peekRencode(payload)
	case wire.Bencode:
		return peekBencode(payload)
	}
	return "", 0, fmt.Errorf("%v packets are not supported", e)
}

// maxTypeLen bounds a packet type name; xpra's longest is ~30 characters.
const maxTypeLen = 64

func peekRencode(b []byte) (string, int64, error) {
	if len(b) < 2 {
		return "", 0, fmt.Errorf("packet too short: %d bytes", len(b))
	}
	switch c := b[0]; {
	case c >= 0xC1: // list of 1..63 items
	case c == 0x3B: // terminated list
	default:
		return "", 0, fmt.Errorf("packet is not a list (type code 0x%02x)", c)
	}
	b = b[1:]
	switch c := b[0]; {
	case c >= 0x80 && c < 0xC0: // fixed-length string
		n := int(c - 0x80)
		if n == 0 || n > len(b)-1 {
			return "", 0, fmt.Errorf("truncated or empty packet type")
		}
		return string(b[1 : 1+n]), 0, nil
	case c >= '1' && c <= '9', c == '0': // "<len>:" text or "<len>/" bytes
		n, i := 0, 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 4; i++ {
			n = n*10 + int(b[i]-'0')
		}
		if i >= len(b) || (b[i] != ':' && b[i] != '/') || n == 0 || n > maxTypeLen || n > len(b)-i-1 {
			return "", 0, fmt.Errorf("invalid packet type string")
		}
		return string(b[i+1 : i+1+n]), 0, nil
	case c < 44: // small integer alias
		return "", int64(c), nil
	case c == 0x3E && len(b) >= 2: // int8 alias
		return "", int64(int8(b[1])), nil
	case c == 0x3F && len(b) >= 3: // int16 alias
		return "", int64(int16(uint16(b[1])<<8 | uint16(b[2]))), nil
	}
	return "", 0, fmt.Errorf("invalid packet type (type code 0x%02x)", b[0])
}

func peekBencode(b []byte) (string, int64, error) {
	if len(b) < 2 || b[0] != 'l' {
		return "", 0, fmt.Errorf("packet is not a bencoded list")
	}
	b = b[1:]
	if b[0] == 'u' {
		b = b[1:]
	}
	if len(b) > 0 && b[0] == 'i' {
		var n int64
		i := 1
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 10; i++ {
			n = n*10 + int64(b[i]-'0')
		}
		if i >= len(b) || b[i] != 'e' || i == 1 {
			return "", 0, fmt.Errorf("invalid packet type integer")
		}
		return "", n, nil
	}
	n, i := 0, 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 4; i++ {
		n = n*10 + int(b[i]-'0')
	}
	if i == 0 || i >= len(b) || b[i] != ':' || n == 0 || n > maxTypeLen || n > len(b)-i-1 {
		return "", 0, fmt.Errorf("invalid packet type string")
	}
	return string(b[i+1 : i+1+n]), 0, nil
}
