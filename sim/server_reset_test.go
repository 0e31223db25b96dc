package sim

import (
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Server.Arrive resets a reused request slot field by field; a field added
// to either struct must be reset there too.
func TestArriveResetsEveryField(t *testing.T) {
	assert.Equal(t, 16, reflect.TypeOf(Result{}).NumField(), "Result changed: update Server.Arrive")
	assert.Equal(t, 8, reflect.TypeOf(reqState{}).NumField(), "reqState changed: update Server.Arrive")
}
