// SPDX-License-Identifier: GPL-2.0-or-later

package compress

import (
	"bytes"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"

	"github.com/xpra-proxy/xpra-proxy/internal/testenv"
)

// TestAgainstPythonLZ4 checks our lz4 layout against python3-lz4's
// lz4.block with its default size prefix, which is what xpra 3.1.3 sends.
func TestAgainstPythonLZ4(t *testing.T) {
	py := testenv.PythonModules(t, "lz4.block")
	in := []byte(strings.Repeat("the quick brown fox ", 200))
	out, lvl, err := Compress(LZ4, 1, in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "-c", "import sys, lz4.block; d=bytes.fromhex(sys.stdin.read()); sys.stdout.write(lz4.block.decompress(d).hex())")
	cmd.Stdin = strings.NewReader(hex.EncodeToString(out))
	got, err := cmd.Output()
	if err != nil {
		t.Fatalf("python could not decompress our block: %v", err)
	}
	if strings.TrimSpace(string(got)) != hex.EncodeToString(in) {
		t.Fatal("python decompressed something else")
	}
	cmd = exec.Command(py, "-c", "import sys, lz4.block; sys.stdout.write(lz4.block.compress(bytes.fromhex(sys.stdin.read())).hex())")
	cmd.Stdin = strings.NewReader(hex.EncodeToString(in))
	pyOut, err := cmd.Output()
	if err != nil {
		t.Fatalf("python compress: %v", err)
	}
	block, _ := hex.DecodeString(strings.TrimSpace(string(pyOut)))
	back, err := Decompress(lvl, block, 1<<20)
	if err != nil || !bytes.Equal(back, in) {
		t.Fatalf("decompressing python's block: %v", err)
	}
}
