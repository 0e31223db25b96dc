//go:build !mlx || !cgo

package realengine

import "errors"

// ErrNoMLX is returned for the mlx engine by builds without the mlx tag.
var ErrNoMLX = errors.New("engine mlx: this binary was built without MLX (rebuild with -tags mlx)")

// openMLX is replaced by the real engine in builds with the mlx tag.
func openMLX(Options) (Engine, error) { return nil, ErrNoMLX }
