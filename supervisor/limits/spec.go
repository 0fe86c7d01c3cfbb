// SPDX-License-Identifier: GPL-2.0-or-later

package limits

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Startups is sshd's MaxStartups "start:rate:full": below Start
// unauthenticated connections every new one is admitted; from Start on a
// new one is refused with a probability of Rate percent, rising linearly to
// 100 % at Full; at Full all are refused.
type Startups struct{ Start, Rate, Full int }

// ParseStartups reads "start:rate:full", or "N" meaning "N:100:N" (a hard
// cap at N, sshd's single-number form).
func ParseStartups(s string) (Startups, error) {
	fields := strings.Split(strings.TrimSpace(s), ":")
	var v []int
	for _, f := range fields {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return Startups{}, fmt.Errorf("max-startups %q: %q is not a whole number", s, f)
		}
		v = append(v, n)
	}
	var st Startups
	switch len(v) {
	case 1:
		st = Startups{Start: v[0], Rate: 100, Full: v[0]}
	case 3:
		st = Startups{Start: v[0], Rate: v[1], Full: v[2]}
	default:
		return Startups{}, fmt.Errorf("max-startups %q: want start:rate:full (e.g. 50:30:200) or a single number", s)
	}
	if err := st.check(); err != nil {
		return Startups{}, fmt.Errorf("max-startups %q: %w", s, err)
	}
	return st, nil
}

func (s Startups) check() error {
	switch {
	case s.Start <= 0 || s.Full <= 0:
		return errors.New("start and full must be positive")
	case s.Start > s.Full:
		return fmt.Errorf("start %d is above full %d", s.Start, s.Full)
	case s.Rate < 1 || s.Rate > 100:
		return fmt.Errorf("rate %d is not a percentage from 1 to 100", s.Rate)
	}
	return nil
}

func (s Startups) String() string { return fmt.Sprintf("%d:%d:%d", s.Start, s.Rate, s.Full) }

// MarshalText writes "start:rate:full".
func (s Startups) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses as ParseStartups does (TOML strings, flags).
func (s *Startups) UnmarshalText(b []byte) error {
	v, err := ParseStartups(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// NetBlockSize is sshd's PerSourceNetBlockSize "v4:v6": how many leading
// bits of a source address name its block, the unit of the per-source
// limits and penalties.
type NetBlockSize struct{ IPv4, IPv6 int }

// ParseNetBlockSize reads "32:64", or "N" for IPv4 only (IPv6 keeps
// the default 64; sshd's is 128).
func ParseNetBlockSize(s string) (NetBlockSize, error) {
	v4s, v6s, two := strings.Cut(strings.TrimSpace(s), ":")
	nb := NetBlockSize{IPv4: 32, IPv6: 64}
	var err error
	if nb.IPv4, err = strconv.Atoi(strings.TrimSpace(v4s)); err != nil {
		return NetBlockSize{}, fmt.Errorf("per-source-net-block-size %q: want v4bits[:v6bits], e.g. 32:128", s)
	}
	if two {
		if nb.IPv6, err = strconv.Atoi(strings.TrimSpace(v6s)); err != nil {
			return NetBlockSize{}, fmt.Errorf("per-source-net-block-size %q: want v4bits[:v6bits], e.g. 32:128", s)
		}
	}
	if err := nb.check(); err != nil {
		return NetBlockSize{}, fmt.Errorf("per-source-net-block-size %q: %w", s, err)
	}
	return nb, nil
}

func (nb NetBlockSize) check() error {
	if nb.IPv4 < 0 || nb.IPv4 > 32 {
		return fmt.Errorf("IPv4 block size %d is not from 0 to 32", nb.IPv4)
	}
	if nb.IPv6 < 0 || nb.IPv6 > 128 {
		return fmt.Errorf("IPv6 block size %d is not from 0 to 128", nb.IPv6)
	}
	return nil
}

func (nb NetBlockSize) String() string { return fmt.Sprintf("%d:%d", nb.IPv4, nb.IPv6) }

// MarshalText writes "v4:v6".
func (nb NetBlockSize) MarshalText() ([]byte, error) { return []byte(nb.String()), nil }

// UnmarshalText parses as ParseNetBlockSize does.
func (nb *NetBlockSize) UnmarshalText(b []byte) error {
	v, err := ParseNetBlockSize(string(b))
	if err != nil {
		return err
	}
	*nb = v
	return nil
}
