// SPDX-License-Identifier: GPL-2.0-or-later

// Package handover is the state the pre-auth process passes to the worker
// that takes a connection over: the client's hello and what was negotiated
// with it. The supervisor carries it as opaque bytes (it never parses it);
// it is encoded with rencodeplus, which keeps text and binary apart.
package handover

import (
	"fmt"

	"github.com/xpra-proxy/xpra-proxy/protocol/budget"
	"github.com/xpra-proxy/xpra-proxy/protocol/rencode"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
	"github.com/xpra-proxy/xpra-proxy/protocol/wire"
)

// MaxSize bounds a handover blob (a hello is a few tens of KiB).
const MaxSize = 4 << 20

// State is what the worker needs to continue the client's connection.
type State struct {
	Hello    value.Dict    // the client's last (full) hello
	Encoding wire.Encoding // the packet encoder the client sends with
	Leftover []byte        // bytes read from the client after that hello
	Listener string        // listener type the client came in on ("tcp", "unix", ...)
	Peer     string        // the client's address, for logs
}

const version = 1

// Marshal encodes s.
func (s State) Marshal() ([]byte, error) {
	d := value.Dict{
		{Key: "version", Value: int64(version)},
		{Key: "hello", Value: s.Hello},
		{Key: "encoding", Value: int64(s.Encoding)},
		{Key: "leftover", Value: s.Leftover},
		{Key: "listener", Value: s.Listener},
		{Key: "peer", Value: s.Peer},
	}
	b, err := rencode.Encode(d, rencode.Plus)
	if err != nil {
		return nil, fmt.Errorf("handover: %w", err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("handover: %d bytes, more than %d", len(b), MaxSize)
	}
	return b, nil
}

// Budget bounds what decoding a handover may cost the relay: a
// compromised pre-auth process writes it, and without a bound 4 MiB of
// empty lists cost hundreds of MB. An honest pre-auth process decoded
// the hello within budget.ForPacket of its packet limit (a handover is at
// most MaxSize): this is that budget for MaxSize, one level deeper for
// the dict around the hello, so the relay reads whatever it wrote
// (preauth.FuzzLogin checks that).
var Budget = func() budget.Limits {
	l := budget.ForPacket(MaxSize)
	l.Depth++
	return l
}()

// Unmarshal decodes a blob made by Marshal, within Budget.
func Unmarshal(b []byte) (State, error) {
	if len(b) > MaxSize {
		return State{}, fmt.Errorf("handover: %d bytes, more than %d", len(b), MaxSize)
	}
	v, err := rencode.DecodeWithin(b, rencode.Plus, budget.New(Budget))
	if err != nil {
		return State{}, fmt.Errorf("handover: %w", err)
	}
	d, ok := v.(value.Dict)
	if !ok {
		return State{}, fmt.Errorf("handover: not a dict")
	}
	get := func(k string) any { v, _ := d.Get(k); return v }
	if n, _ := value.AsInt(get("version")); n != version {
		return State{}, fmt.Errorf("handover: version %v, want %d", get("version"), version)
	}
	var s State
	if s.Hello, ok = get("hello").(value.Dict); !ok {
		return State{}, fmt.Errorf("handover: no client hello")
	}
	enc, _ := value.AsInt(get("encoding"))
	if enc < int64(wire.Bencode) || enc > int64(wire.RencodePlus) {
		return State{}, fmt.Errorf("handover: invalid encoding %d", enc)
	}
	s.Encoding = wire.Encoding(enc)
	s.Leftover, _ = get("leftover").([]byte)
	s.Listener, _ = get("listener").(string)
	s.Peer, _ = get("peer").(string)
	return s, nil
}
