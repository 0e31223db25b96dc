// C helpers for package mlxc: every helper makes one or more mlx-c calls
// and returns NULL on success or a malloc'd copy of MLX's error message,
// so the message is read in the same cgo crossing as the failing call
// (the Go side frees it).
#ifndef MLXC_HELPERS_H
#define MLXC_HELPERS_H

#include <stdint.h>
#include <stdlib.h>
#include "mlx/c/mlx.h"

void mlxc_install_error_handler(void);

char* mlxc_version(char** out);
char* mlxc_free_array(mlx_array a);
char* mlxc_new_array(mlx_array* res, const void* data, const int* shape, int ndim, mlx_dtype storage, mlx_dtype view, mlx_stream s);
char* mlxc_read(mlx_array a, mlx_dtype as, mlx_dtype storage, mlx_stream s, void* out, size_t nbytes);
char* mlxc_shape(mlx_array a, int* ndim, int* shape, int cap);

char* mlxc_eval(const mlx_array* arrs, size_t n, int async);
char* mlxc_synchronize(mlx_stream s);

char* mlxc_default_stream(mlx_stream* res, int want_gpu);
char* mlxc_gpu_available(int* res);
char* mlxc_default_device_gpu(int* res);
char* mlxc_stream_string(mlx_stream s, char** out);

char* mlxc_matmul(mlx_array* res, mlx_array a, mlx_array b, mlx_stream s);
char* mlxc_add(mlx_array* res, mlx_array a, mlx_array b, mlx_stream s);
char* mlxc_multiply(mlx_array* res, mlx_array a, mlx_array b, mlx_stream s);
char* mlxc_reshape(mlx_array* res, mlx_array a, const int* shape, size_t n, mlx_stream s);
char* mlxc_transpose(mlx_array* res, mlx_array a, const int* axes, size_t n, mlx_stream s);
char* mlxc_concatenate(mlx_array* res, const mlx_array* arrs, size_t n, int axis, mlx_stream s);
char* mlxc_slice(mlx_array* res, mlx_array a, const int* start, const int* stop, const int* strides, size_t n, mlx_stream s);
char* mlxc_take(mlx_array* res, mlx_array a, mlx_array idx, int axis, mlx_stream s);
char* mlxc_softmax(mlx_array* res, mlx_array a, int axis, mlx_stream s);
char* mlxc_argmax(mlx_array* res, mlx_array a, int axis, int keepdims, mlx_stream s);
char* mlxc_astype(mlx_array* res, mlx_array a, mlx_dtype dt, mlx_stream s);
char* mlxc_rms_norm(mlx_array* res, mlx_array x, mlx_array w, float eps, mlx_stream s);
char* mlxc_rope(mlx_array* res, mlx_array x, int dims, int traditional, int has_base, float base, float scale, int offset, mlx_array freqs, mlx_stream s);
char* mlxc_sdpa(mlx_array* res, mlx_array q, mlx_array k, mlx_array v, float scale, const char* mode, mlx_array mask, mlx_stream s);
char* mlxc_quantize(mlx_array* wq, mlx_array* scales, mlx_array* biases, mlx_array w, int group, int bits, mlx_stream s);
char* mlxc_dequantize(mlx_array* res, mlx_array wq, mlx_array scales, mlx_array biases, int group, int bits, mlx_stream s);
char* mlxc_quantized_matmul(mlx_array* res, mlx_array x, mlx_array wq, mlx_array scales, mlx_array biases, int transpose, int group, int bits, mlx_stream s);
char* mlxc_random_key(mlx_array* res, uint64_t seed);
char* mlxc_random_uniform(mlx_array* res, const int* shape, size_t n, mlx_dtype dt, float lo, float hi, mlx_array key, mlx_stream s);
char* mlxc_random_normal(mlx_array* res, const int* shape, size_t n, mlx_dtype dt, float loc, float scale, mlx_array key, mlx_stream s);

char* mlxc_memory(size_t* active, size_t* peak, size_t* cache);
char* mlxc_reset_peak(void);
char* mlxc_clear_cache(void);
char* mlxc_set_cache_limit(size_t* prev, size_t limit);

// Safetensors: names and arrays travel as parallel C arrays.
char* mlxc_save_safetensors(const char* path, const char** names, const mlx_array* arrs, size_t n, const char** mkeys, const char** mvals, size_t nm);
// Loads a file; *handle owns the maps until mlxc_st_free.
typedef struct {
  mlx_map_string_to_array arrays;
  mlx_map_string_to_string meta;
} mlxc_st;
char* mlxc_load_safetensors(mlxc_st* st, const char* path, mlx_stream s);
// Iteration: fills up to cap entries; returns count through *n.
char* mlxc_st_arrays(mlxc_st* st, const char** names, mlx_array* arrs, size_t cap, size_t* n);
char* mlxc_st_meta(mlxc_st* st, const char** keys, const char** vals, size_t cap, size_t* n);
void mlxc_st_free(mlxc_st* st);

// A linear layer in the Hugging Face [out, in] layout: dense when
// scales.ctx is NULL, else MLX affine-quantised. A dense w with transposed
// set holds [in, out] (e.g. a transposed view made once at load).
typedef struct {
  mlx_array w, scales, biases;
  int group_size, bits;
  int transposed;
} mlxc_linear;

typedef struct {
  mlx_array attn_norm, mlp_norm;
  mlxc_linear q, k, v, o, gate, up, down;
} mlxc_block_weights;

typedef struct {
  int n_heads, n_kv_heads, head_dim;
  float eps, rope_base;
  mlx_array rope_freqs; // ctx NULL: base only
} mlxc_block_cfg;

// One Llama decoder block: x [B, L, hidden]; k_cache/v_cache [B, n_kv, T, hd]
// (ctx NULL for none); offset is the position of x's first token. Sets out,
// k_out, v_out (caches including x's keys and values); evaluates them when
// eval != 0.
char* mlxc_llama_block(mlx_array* out, mlx_array* k_out, mlx_array* v_out, mlx_array x,
                       const mlxc_block_weights* w, const mlxc_block_cfg* cfg,
                       mlx_array k_cache, mlx_array v_cache, int offset, int eval, mlx_stream s);

// Decode rows of different lengths in one batch: x [B, 1, hidden]; row i's
// cache k_caches[i]/v_caches[i] is [1, kv, lens[i], hd]. The caches are
// left-padded to the longest, masked, and rotated at per-row positions;
// k_outs/v_outs (B each, filled) get each row's cache including the new
// token.
char* mlxc_llama_block_padded(mlx_array* out, mlx_array* k_outs, mlx_array* v_outs, mlx_array x,
                              const mlxc_block_weights* w, const mlxc_block_cfg* cfg,
                              const mlx_array* k_caches, const mlx_array* v_caches, const int* lens,
                              mlx_stream s);

// A slot step: the per-step inputs of mlxc_llama_block_slots, shared by all
// layers. Row i of the slot cache holds lens[i] tokens at columns
// 0..lens[i]-1; the new token goes to column lens[i] at position lens[i];
// attention covers columns 0..width-1 with column j visible iff j <= lens[i].
typedef struct {
  mlx_array rows; // [B] int32 0..B-1
  mlx_array cols; // [B] int32 lens, also the RoPE offsets
  mlx_array mask; // [B, 1, 1, width] bool
  int width;
} mlxc_slot_step;
char* mlxc_slot_step_new(mlxc_slot_step* st, const int* lens, int B, int width);
void mlxc_slot_step_free(mlxc_slot_step* st);

// Decode B rows against a slot cache k_cache/v_cache [R >= B, n_kv, C, hd]:
// x [B, 1, hidden]; k_out/v_out get the whole slot cache with the new
// tokens written in. A constant number of MLX operations whatever B is.
char* mlxc_llama_block_slots(mlx_array* out, mlx_array* k_out, mlx_array* v_out, mlx_array x,
                             const mlxc_block_weights* w, const mlxc_block_cfg* cfg,
                             mlx_array k_cache, mlx_array v_cache, const mlxc_slot_step* st,
                             mlx_stream s);

// A whole slot decode step (embedding lookup, every layer's
// mlxc_llama_block_slots over the full cache width, final norm, head,
// argmax) as one MLX function of its inputs, optionally compiled with
// mlx_compile: MLX then traces it once per input shapes and replays the
// recorded tape on later calls instead of running the ops' construction
// code (shape inference, broadcasting, the CPU backend's fallback
// expansions of RoPE and attention) again. The function holds its own
// references to the weights. MLX keeps compiled tapes per OS thread: call
// (and forget and free) a function from one thread.
typedef struct {
  void* p;
} mlxc_slot_fn;
// layers: n_layers blocks; embed [vocab, hidden] (dense or quantised);
// head as linear() takes it (dense transposed [hidden, vocab], or
// quantised [vocab, hidden]); norm [hidden].
char* mlxc_slot_fn_new(mlxc_slot_fn* f, const mlxc_block_weights* layers, int n_layers, const mlxc_block_cfg* cfg,
                       const mlxc_linear* embed, const mlxc_linear* head, mlx_array norm, int compiled, mlx_stream s);
// ids [B] (int32 or uint32) and lens [B] int32 (tokens held by each of rows
// 0..B-1, also their RoPE positions); k/v the n_layers slot caches
// [R >= B, n_kv, C > max(lens), hd]. Sets toks [B] uint32, logits
// [B, vocab] and k_outs/v_outs (n_layers each) the updated caches. Lazy.
char* mlxc_slot_fn_apply(mlxc_slot_fn f, mlx_array* toks, mlx_array* logits, mlx_array* k_outs, mlx_array* v_outs,
                         mlx_array ids, mlx_array lens, const mlx_array* k, const mlx_array* v);
// Frees the function and drops its compiled tapes from MLX's cache.
void mlxc_slot_fn_free(mlxc_slot_fn* f);
// Drops the function's compiled tapes (and the small constants they hold);
// the next call traces again.
char* mlxc_slot_fn_forget(mlxc_slot_fn f);
// How many times the function's graph was built: once per call
// uncompiled, once per distinct input shapes (since the last forget)
// compiled.
int mlxc_slot_fn_traces(mlxc_slot_fn f);

char* mlxc_slice_update(mlx_array* res, mlx_array a, mlx_array upd, const int* start, const int* stop, size_t n, mlx_stream s);
// Pads a with zeros after the end of each axis i by high[i].
char* mlxc_pad_zero(mlx_array* res, mlx_array a, const int* high, size_t n, mlx_stream s);

#endif
