//go:build mlx && cgo

package mlxc

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadSafetensors feeds MLX's safetensors reader malformed files: it
// must answer with an error or arrays, never crash the process.
func FuzzLoadSafetensors(f *testing.F) {
	dir := f.TempDir()
	good := filepath.Join(dir, "good.safetensors")
	a, err := FromFloat32([]float32{1, 2, 3, 4}, 2, 2)
	if err != nil {
		f.Fatal(err)
	}
	if err := SaveSafetensors(good, map[string]*Array{"w": a}, map[string]string{"k": "v"}); err != nil {
		f.Fatal(err)
	}
	a.Close()
	data, err := os.ReadFile(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:len(data)-3])
	f.Add(data[:8])
	f.Add([]byte{})
	hdr := []byte(`{"w":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,16]}}`)
	bad := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	f.Add(append(append(bad, hdr...), make([]byte, 16)...))
	s, err := CPUStream()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "f.safetensors")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		arrays, _, err := LoadSafetensors(path, s)
		if err != nil {
			return
		}
		for _, x := range arrays {
			// Reading may fail (size beyond the file) but must not crash.
			if x.Size() < 1<<20 {
				_, _ = x.Float32()
			}
			x.Close()
		}
	})
}
