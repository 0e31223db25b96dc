// Package mlxc is a thin, safe, coarse-grained Go layer over mlx-c, the C
// API of Apple's MLX array framework, covering what a Llama-style decoder
// engine needs: arrays to and from Go slices (float32, int32, uint32, and
// float16/bfloat16 as raw 16-bit patterns), the decoder's operations
// (matmul, add, multiply, reshape, transpose, concatenate, slice, take,
// softmax, argmax, the fast rms_norm / rope / scaled_dot_product_attention
// kernels, affine quantize / dequantize / quantized_matmul), seeded random
// normals, safetensors load and save with metadata, eval / async eval /
// synchronize, streams and devices, allocator statistics and MLX's version.
// Stream.Block runs a whole Llama decoder layer in one cgo crossing;
// SlotFunc a whole decode step over a slot KV cache, compiled with MLX's
// compile so that a step replays a recorded graph.
//
// # Building
//
// The real bindings need the `mlx` build tag and cgo; without them the
// package compiles to a stub with the same API whose calls return
// ErrNoMLX, so the toolkit builds and tests everywhere. mlx-c installs
// headers and libmlxc but no pkg-config file, so point cgo at it:
//
//	# macOS (Homebrew: brew install mlx-c, which brings MLX)
//	export CGO_CFLAGS=-I$(brew --prefix)/include
//	export CGO_LDFLAGS="-L$(brew --prefix)/lib -Wl,-rpath,$(brew --prefix)/lib -lmlxc -lmlx"
//	# Linux, MLX and mlx-c built from source (CPU or CUDA) into /opt/mlx
//	export CGO_CFLAGS=-I/opt/mlx/include
//	export CGO_LDFLAGS="-L/opt/mlx/lib -Wl,-rpath,/opt/mlx/lib -lmlxc -lmlx"
//	go test -tags mlx ./mlxc/
//
// # Errors
//
// mlx-c's default error handler prints and calls exit. On first use the
// package installs its own handler (mlx_set_error_handler, process-global,
// once): it copies MLX's message into a C thread-local buffer, and every C
// helper of the package clears that buffer, makes its mlx-c calls, checks
// each return code and copies the message out before returning — all in
// the same cgo crossing, hence on the same OS thread — so concurrent
// failures on other goroutines cannot mix messages. A failing call returns
// an error "mlxc: <op>: <MLX message>" and the process carries on. Do not
// install another mlx-c error handler in the same process.
//
// # Lifetime and threads
//
// Arrays and Streams are freed by Close, which is safe to call twice; a
// runtime cleanup frees forgotten handles only as a safety net, since the
// garbage collector does not see the C memory behind them. MLX does not
// promise thread-safe graph building, so an engine drives its Streams and
// Arrays from one goroutine at a time (handing them over is fine); Close
// must not race with any use. On a GPU (Metal or CUDA) that is not enough:
// MLX keeps a stream's command encoder per OS thread, so a GPU stream must
// be created and evaluated on one OS thread (runtime.LockOSThread), as
// realengine's MLX engine does. MLX's compile cache is per OS thread too:
// a SlotFunc belongs on one thread. Memory, ResetPeakMemory, ClearCache,
// SetCacheLimit, Version and GPUAvailable may be called from any goroutine,
// and error messages never cross between goroutines (see Errors).
// AsyncEval returns before the work is done; a failure inside MLX's
// scheduler thread cannot become a Go error, so AsyncEval is
// for graphs already known to be valid (Eval them once first).
//
// The package must not grow engine logic (scheduling, KV-cache policy,
// sampling): that belongs to realengine, which uses it.
package mlxc
