// Package realengine runs a real Llama-architecture decoder one serving
// iteration at a time, so that replay can measure what the simulator only
// models.
//
// It holds three things:
//   - the model definition shared by every engine and its tests: Config (parsed
//     from a Hugging Face config.json or taken from a preset), Weights in the
//     Hugging Face tensor layout, a safetensors reader and writer, MLX affine
//     dequantisation, and a slow float64 reference forward pass;
//   - the Engine interface at iteration level (admit, step, retire) and the
//     pure-Go CPU engine;
//   - calibration: measuring step times over a grid and fitting the step-cost
//     coefficients the simulator uses.
//
// The package knows nothing about batching policies, engine modes or
// max_batch: the serving model that decides which sequences are admitted in
// which step lives once, in the simulator, and replay hands its plan to an
// Engine. It must not import the simulator either; replay converts a
// Calibration into the simulator's profile format. Engines built on MLX live
// in files behind the `mlx` build tag.
package realengine
