package replay

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/parquet-go/parquet-go"
)

// WriteSteps writes step records to a Parquet file through a temporary
// file in the same directory; an existing path is kept unless force.
func WriteSteps(path string, steps []StepRecord, meta map[string]string, force bool) (err error) {
	if !force {
		if _, err := os.Stat(path); err == nil {
			return fmt.Errorf("%s: already exists (use --force to overwrite)", path)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	_ = f.Chmod(0o644) // CreateTemp makes it 0600; outputs are for others to read
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	opts := []parquet.WriterOption{parquet.Compression(&parquet.Zstd)}
	for _, k := range keys {
		opts = append(opts, parquet.KeyValueMetadata(k, meta[k]))
	}
	w := parquet.NewGenericWriter[StepRecord](f, opts...)
	if _, err = w.Write(steps); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if err = w.Close(); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	return nil
}

// ReadSteps reads a file written by WriteSteps.
func ReadSteps(path string) ([]StepRecord, error) {
	rows, err := parquet.ReadFile[StepRecord](path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return rows, nil
}
