// SPDX-License-Identifier: GPL-2.0-or-later

package launch

import (
	"bytes"
	"strings"
	"testing"
)

func TestReadAll(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		max     int64
		wantErr string
	}{
		{"empty", 0, 100, ""},
		{"small", 10, 100, ""},
		{"a hello's size", 73036, 1 << 20, ""},
		{"exactly max", 100, 100, ""},
		{"over max", 101, 100, "exceeds 100 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := bytes.Repeat([]byte("0123456789"), tt.size/10+1)[:tt.size]
			f, err := Memfd("test", want)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := ReadAll(f, tt.max)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(want))
			}
		})
	}
}
