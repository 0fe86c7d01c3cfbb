// SPDX-License-Identifier: GPL-2.0-or-later

package rencode

import (
	"bytes"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// TestAgainstPythonRencode checks our legacy encoder byte for byte against
// python3-rencode 1.0.6, the library xpra 3.1.3 itself uses, and that it
// decodes what we write.
func TestAgainstPythonRencode(t *testing.T) {
	py := testenv.PythonModules(t, "rencode")
	cases := []struct {
		expr string // a python expression
		v    any    // the same value for us
	}{
		{`["hello", {"version": "3.1.3"}]`, []any{"hello", value.Dict{{Key: "version", Value: "3.1.3"}}}},
		{`[0, 43, 44, -1, -32, -33, 127, -128, 128, 32767, -32769, 2**31, -2**63, 2**63, -2**63-1, 10**30]`,
			[]any{int64(0), int64(43), int64(44), int64(-1), int64(-32), int64(-33), int64(127), int64(-128), int64(128),
				int64(32767), int64(-32769), int64(1) << 31, int64(-1 << 63), mustBig("9223372036854775808"),
				mustBig("-9223372036854775809"), mustBig("1000000000000000000000000000000")}},
		{`[True, False, None, 1.5, -0.25]`, []any{true, false, nil, float32(1.5), float32(-0.25)}},
		{`[b"", b"\x00\xff", "x"*63, "y"*64, "z"*1000]`,
			[]any{[]byte{}, []byte{0, 0xff}, strings.Repeat("x", 63), strings.Repeat("y", 64), strings.Repeat("z", 1000)}},
		{`[list(range(63)), list(range(64))]`, []any{seq(63), seq(64)}},
		{`{i: i for i in range(24)}`, dictN(24)},
		{`{i: i for i in range(25)}`, dictN(25)},
		{`["\u00e9t\u00e9"]`, []any{"été"}},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			out, err := exec.Command(py, "-c", "import rencode,sys; sys.stdout.write(rencode.dumps("+tc.expr+").hex())").Output()
			if err != nil {
				t.Fatalf("python: %v", err)
			}
			want, _ := hex.DecodeString(strings.TrimSpace(string(out)))
			got, err := Encode(tc.v, Legacy)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("ours   % x\npython % x", got, want)
			}
			// Python reads back what we wrote and re-dumps it identically.
			cmd := exec.Command(py, "-c", "import rencode,sys; d=bytes.fromhex(sys.stdin.read()); sys.stdout.write(rencode.dumps(rencode.loads(d)).hex())")
			cmd.Stdin = strings.NewReader(hex.EncodeToString(got))
			out, err = cmd.Output()
			if err != nil {
				t.Fatalf("python loads of our bytes: %v", err)
			}
			if strings.TrimSpace(string(out)) != hex.EncodeToString(got) {
				t.Fatalf("python re-dump differs: %s", out)
			}
		})
	}
}

func seq(n int) []any {
	l := make([]any, n)
	for i := range l {
		l[i] = int64(i)
	}
	return l
}

func dictN(n int) value.Dict {
	d := make(value.Dict, n)
	for i := range d {
		d[i] = value.Item{Key: int64(i), Value: int64(i)}
	}
	return d
}
