// SPDX-License-Identifier: GPL-2.0-or-later

package bencode

import (
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
	"github.com/xpra-proxy/xpra-proxy/protocol/value"
)

// TestAgainstXpraBencode compares our encoder with xpra 3.1.3's own and
// checks that xpra decodes what we write.
func TestAgainstXpraBencode(t *testing.T) {
	py := testenv.PythonModules(t, "xpra.net.bencode")
	v := []any{"hello", value.Dict{
		{Key: "version", Value: "3.1.3"}, {Key: "b", Value: true}, {Key: "n", Value: int64(-5)},
		{Key: "l", Value: []any{[]byte{0, 0xff}, int64(1) << 40}},
	}}
	const expr = `["hello", {"version": "3.1.3", "b": True, "n": -5, "l": [b"\x00\xff", 2**40]}]`
	out, err := exec.Command(py, "-c", "import sys; from xpra.net.bencode import bencode; sys.stdout.write(bencode("+expr+").hex())").Output()
	if err != nil {
		t.Fatalf("python: %v", err)
	}
	got, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got) != strings.TrimSpace(string(out)) {
		t.Fatalf("ours %q\nxpra %s", got, out)
	}
	cmd := exec.Command(py, "-c", "import sys; from xpra.net.bencode import bencode, bdecode; d=bytes.fromhex(sys.stdin.read()); v, n = bdecode(d); assert n == len(d); sys.stdout.write(bencode(v).hex())")
	cmd.Stdin = strings.NewReader(hex.EncodeToString(got))
	out, err = cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != hex.EncodeToString(got) {
		t.Fatalf("xpra could not read our bencode back: %s %v", out, err)
	}
}
