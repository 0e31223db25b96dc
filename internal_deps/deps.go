package deps
import (
 _ "github.com/spf13/pflag"
 _ "gonum.org/v1/plot"
 _ "github.com/parquet-go/parquet-go"
 _ "github.com/stretchr/testify/require"
 _ "golang.org/x/perf/benchmath"
 _ "gonum.org/v1/gonum/mat"
)
