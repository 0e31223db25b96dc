//go:build !mlx || !cgo

package realengine

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestOpenMLXWithoutTag(t *testing.T) {
	_, err := Open("mlx", Options{Model: "tiny"})
	assert.ErrorIs(t, err, ErrNoMLX)
}
