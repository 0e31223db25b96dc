package plots_test

import (
	"fmt"
	"io"

	"github.com/batchkit/batchkit/plots"
)

// A command turns its results into plain series and hands them over; the
// figure type picks the plot, the output name the format.
func Example() {
	predicted := []float64{0, 1.5, 2, 2.5, 4, 9} // window waits from the simulator, ms
	measured := []float64{0, 1.8, 2.2, 3, 5, 12} // the same policy replayed, ms
	fig := plots.CDFPlot{
		Title:  "Window wait, fcfs",
		Metric: "window wait", Unit: "ms", LogX: true,
		Series: []plots.Sample{
			{Group: "fcfs", Source: plots.Predicted, Values: predicted},
			{Group: "fcfs", Source: plots.Measured, Values: measured},
		},
	}
	// plots.Save("wait.png", fig, plots.Options{}, false) writes a file.
	err := plots.Write(io.Discard, "png", fig, plots.Options{Width: 1200, Height: 800, DPI: 96})
	fmt.Println(err)
	// Output: <nil>
}
