// SPDX-License-Identifier: GPL-2.0-or-later

package limits

import (
	"strings"
	"testing"
)

func TestParseStartups(t *testing.T) {
	tests := []struct {
		in      string
		want    Startups
		wantErr string
	}{
		{"10:30:100", Startups{10, 30, 100}, ""},
		{"50:30:200", Startups{50, 30, 200}, ""},
		{" 5 : 100 : 5 ", Startups{5, 100, 5}, ""},
		{"200", Startups{200, 100, 200}, ""}, // N is N:100:N
		{"1", Startups{1, 100, 1}, ""},
		{"1:1:1", Startups{1, 1, 1}, ""},
		{"", Startups{}, "not a whole number"},
		{"ten", Startups{}, `"ten" is not a whole number`},
		{"10:30", Startups{}, "want start:rate:full"},
		{"10:30:100:5", Startups{}, "want start:rate:full"},
		{"10::100", Startups{}, "not a whole number"},
		{"10:30%:100", Startups{}, "not a whole number"},
		{"0", Startups{}, "must be positive"},
		{"-3", Startups{}, "must be positive"},
		{"0:30:100", Startups{}, "must be positive"},
		{"100:30:10", Startups{}, "start 100 is above full 10"},
		{"10:0:100", Startups{}, "rate 0 is not a percentage"},
		{"10:101:100", Startups{}, "rate 101 is not a percentage"},
		{"99999999999999999999", Startups{}, "not a whole number"},
	}
	for _, tc := range tests {
		got, err := ParseStartups(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseStartups(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseStartups(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		// What it prints parses back to itself (config files, flag defaults).
		var back Startups
		if err := back.UnmarshalText([]byte(got.String())); err != nil || back != got {
			t.Errorf("round trip of %v: %v, %v", got, back, err)
		}
	}
}

func TestParseNetBlockSize(t *testing.T) {
	tests := []struct {
		in      string
		want    NetBlockSize
		wantErr string
	}{
		{"32:128", NetBlockSize{32, 128}, ""},
		{"24:64", NetBlockSize{24, 64}, ""},
		{"24", NetBlockSize{24, 64}, ""}, // IPv6 keeps its default (64; sshd: 128)
		{"0:0", NetBlockSize{0, 0}, ""},  // everyone is one source
		{"33", NetBlockSize{}, "IPv4 block size 33"},
		{"32:129", NetBlockSize{}, "IPv6 block size 129"},
		{"-1:64", NetBlockSize{}, "IPv4 block size -1"},
		{"", NetBlockSize{}, "want v4bits[:v6bits]"},
		{"a:b", NetBlockSize{}, "want v4bits[:v6bits]"},
		{"24:", NetBlockSize{}, "want v4bits[:v6bits]"},
		{"24:64:1", NetBlockSize{}, "want v4bits[:v6bits]"},
	}
	for _, tc := range tests {
		got, err := ParseNetBlockSize(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseNetBlockSize(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseNetBlockSize(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		var back NetBlockSize
		if err := back.UnmarshalText([]byte(got.String())); err != nil || back != got {
			t.Errorf("round trip of %v: %v, %v", got, back, err)
		}
	}
}
