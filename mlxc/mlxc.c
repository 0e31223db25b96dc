//go:build mlx && cgo

#include "mlxc.h"

#include <stdio.h>
#include <string.h>
#include <math.h>

// MLX reports a failure by calling the process-global error handler on the
// failing thread and then returning non-zero. The handler stores the message
// in a thread-local buffer; each helper below clears it before its calls and
// copies it out on failure, all on the same thread within one cgo crossing.
static __thread char mlxc_errbuf[2048];
static __thread int mlxc_errset;

static void mlxc_handler(const char* msg, void* data) {
  (void)data;
  snprintf(mlxc_errbuf, sizeof mlxc_errbuf, "%s", msg ? msg : "unknown MLX error");
  mlxc_errset = 1;
}

void mlxc_install_error_handler(void) { mlx_set_error_handler(mlxc_handler, NULL, NULL); }

static void reset(void) {
  mlxc_errset = 0;
  mlxc_errbuf[0] = 0;
}

static char* take(const char* fallback) {
  const char* m = mlxc_errset ? mlxc_errbuf : fallback;
  size_t n = strlen(m);
  char* out = malloc(n + 1);
  if (out) memcpy(out, m, n + 1);
  mlxc_errset = 0;
  return out;
}

#define CALL(expr)                                   \
  do {                                               \
    reset();                                         \
    if ((expr) != 0) return take("mlx call failed: " #expr); \
    return NULL;                                     \
  } while (0)

#define TRY(expr)                                          \
  do {                                                     \
    if ((expr) != 0) {                                     \
      err = take("mlx call failed: " #expr);               \
      goto done;                                           \
    }                                                      \
  } while (0)

static mlx_optional_int opt_int(int v) {
  mlx_optional_int o = {v, true};
  return o;
}

char* mlxc_version(char** out) {
  reset();
  mlx_string s = mlx_string_new();
  if (mlx_version(&s) != 0) {
    mlx_string_free(s);
    return take("mlx_version failed");
  }
  const char* d = mlx_string_data(s);
  *out = strdup(d ? d : "");
  mlx_string_free(s);
  return NULL;
}

char* mlxc_free_array(mlx_array a) { CALL(mlx_array_free(a)); }

char* mlxc_new_array(mlx_array* res, const void* data, const int* shape, int ndim, mlx_dtype storage, mlx_dtype view, mlx_stream s) {
  reset();
  mlx_array a = mlx_array_new_data(data, shape, ndim, storage);
  if (a.ctx == NULL) return take("mlx_array_new_data failed");
  if (view == storage) {
    *res = a;
    return NULL;
  }
  // float16/bfloat16 arrive as raw 16-bit words: reinterpret, then make
  // the view concrete so the array does not pin its uint16 parent graph.
  mlx_array v = mlx_array_new();
  if (mlx_view(&v, a, view, s) != 0) {
    mlx_array_free(a);
    return take("mlx_view failed");
  }
  mlx_array_free(a);
  *res = v;
  return NULL;
}

static const void* data_of(mlx_array c, mlx_dtype storage) {
  switch (storage) {
    case MLX_FLOAT32: return mlx_array_data_float32(c);
    case MLX_INT32: return mlx_array_data_int32(c);
    case MLX_UINT32: return mlx_array_data_uint32(c);
    case MLX_UINT16: return mlx_array_data_uint16(c);
    default: return NULL;
  }
}

char* mlxc_read(mlx_array a, mlx_dtype as, mlx_dtype storage, mlx_stream s, void* out, size_t nbytes) {
  char* err = NULL;
  reset();
  // Fast path, e.g. a step's tokens: an array already of the wanted type
  // and row-contiguous is copied out without building conversion nodes.
  if (as == storage && mlx_array_dtype(a) == as && mlx_array_nbytes(a) == nbytes) {
    if (mlx_array_eval(a) != 0) return take("mlx_array_eval failed");
    bool rc = false;
    if (_mlx_array_is_row_contiguous(&rc, a) == 0 && rc) {
      const void* p = data_of(a, storage);
      if (p != NULL) {
        if (nbytes) memcpy(out, p, nbytes);
        return NULL;
      }
    }
    reset();
  }
  mlx_array t = mlx_array_new(), u = mlx_array_new(), c = mlx_array_new();
  TRY(mlx_astype(&t, a, as, s));
  if (storage != as) {
    TRY(mlx_view(&u, t, storage, s));
  } else {
    TRY(mlx_array_set(&u, t));
  }
  TRY(mlx_contiguous(&c, u, false, s));
  TRY(mlx_array_eval(c));
  if (mlx_array_nbytes(c) != nbytes) {
    err = strdup("mlxc: read size mismatch");
    goto done;
  }
  const void* p = data_of(c, storage);
  if (p == NULL) {
    err = take("mlxc: array has no data");
    goto done;
  }
  if (nbytes) memcpy(out, p, nbytes);
done:
  mlx_array_free(t);
  mlx_array_free(u);
  mlx_array_free(c);
  return err;
}

char* mlxc_shape(mlx_array a, int* ndim, int* shape, int cap) {
  reset();
  size_t n = mlx_array_ndim(a);
  const int* sh = mlx_array_shape(a);
  if (mlxc_errset) return take("mlx_array_shape failed");
  *ndim = (int)n;
  for (size_t i = 0; i < n && (int)i < cap; i++) shape[i] = sh[i];
  return NULL;
}

char* mlxc_eval(const mlx_array* arrs, size_t n, int async) {
  reset();
  mlx_vector_array v = mlx_vector_array_new_data(arrs, n);
  int rc = async ? mlx_async_eval(v) : mlx_eval(v);
  mlx_vector_array_free(v);
  if (rc != 0) return take("mlx_eval failed");
  return NULL;
}

char* mlxc_synchronize(mlx_stream s) { CALL(mlx_synchronize(s)); }

char* mlxc_gpu_available(int* res) {
  reset();
  // is_available checks that the build has a GPU backend before asking it
  // for a device count, so a CUDA build on a machine without a GPU says no
  // instead of failing.
  bool ok = false;
  mlx_device d = mlx_device_new_type(MLX_GPU, 0);
  int rc = mlx_device_is_available(&ok, d);
  mlx_device_free(d);
  if (rc != 0) return take("mlx_device_is_available failed");
  *res = ok;
  return NULL;
}

char* mlxc_default_device_gpu(int* res) {
  reset();
  mlx_device d = mlx_device_new();
  mlx_device_type t = MLX_CPU;
  if (mlx_get_default_device(&d) != 0 || mlx_device_get_type(&t, d) != 0) {
    mlx_device_free(d);
    return take("mlx_get_default_device failed");
  }
  mlx_device_free(d);
  *res = t == MLX_GPU;
  return NULL;
}

char* mlxc_default_stream(mlx_stream* res, int want_gpu) {
  reset();
  mlx_stream s = want_gpu ? mlx_default_gpu_stream_new() : mlx_default_cpu_stream_new();
  if (s.ctx == NULL) return take("mlx: no default stream");
  *res = s;
  return NULL;
}

char* mlxc_stream_string(mlx_stream s, char** out) {
  reset();
  mlx_string str = mlx_string_new();
  if (mlx_stream_tostring(&str, s) != 0) {
    mlx_string_free(str);
    return take("mlx_stream_tostring failed");
  }
  const char* d = mlx_string_data(str);
  *out = strdup(d ? d : "");
  mlx_string_free(str);
  return NULL;
}

char* mlxc_matmul(mlx_array* res, mlx_array a, mlx_array b, mlx_stream s) { CALL(mlx_matmul(res, a, b, s)); }
char* mlxc_add(mlx_array* res, mlx_array a, mlx_array b, mlx_stream s) { CALL(mlx_add(res, a, b, s)); }
char* mlxc_multiply(mlx_array* res, mlx_array a, mlx_array b, mlx_stream s) { CALL(mlx_multiply(res, a, b, s)); }
char* mlxc_reshape(mlx_array* res, mlx_array a, const int* shape, size_t n, mlx_stream s) { CALL(mlx_reshape(res, a, shape, n, s)); }
char* mlxc_transpose(mlx_array* res, mlx_array a, const int* axes, size_t n, mlx_stream s) {
  if (n == 0) CALL(mlx_transpose(res, a, s));
  CALL(mlx_transpose_axes(res, a, axes, n, s));
}
char* mlxc_concatenate(mlx_array* res, const mlx_array* arrs, size_t n, int axis, mlx_stream s) {
  reset();
  mlx_vector_array v = mlx_vector_array_new_data(arrs, n);
  int rc = mlx_concatenate_axis(res, v, axis, s);
  mlx_vector_array_free(v);
  if (rc != 0) return take("mlx_concatenate failed");
  return NULL;
}
char* mlxc_slice(mlx_array* res, mlx_array a, const int* start, const int* stop, const int* strides, size_t n, mlx_stream s) {
  CALL(mlx_slice(res, a, start, n, stop, n, strides, n, s));
}
char* mlxc_take(mlx_array* res, mlx_array a, mlx_array idx, int axis, mlx_stream s) { CALL(mlx_take_axis(res, a, idx, axis, s)); }
char* mlxc_softmax(mlx_array* res, mlx_array a, int axis, mlx_stream s) { CALL(mlx_softmax_axis(res, a, axis, true, s)); }
char* mlxc_argmax(mlx_array* res, mlx_array a, int axis, int keepdims, mlx_stream s) { CALL(mlx_argmax_axis(res, a, axis, keepdims != 0, s)); }
char* mlxc_astype(mlx_array* res, mlx_array a, mlx_dtype dt, mlx_stream s) { CALL(mlx_astype(res, a, dt, s)); }
char* mlxc_rope(mlx_array* res, mlx_array x, int dims, int traditional, int has_base, float base, float scale, int offset, mlx_array freqs, mlx_stream s) {
  mlx_optional_float b = {base, has_base != 0};
  CALL(mlx_fast_rope(res, x, dims, traditional != 0, b, scale, offset, freqs, s));
}
char* mlxc_sdpa(mlx_array* res, mlx_array q, mlx_array k, mlx_array v, float scale, const char* mode, mlx_array mask, mlx_stream s) {
  mlx_array sinks = {NULL};
  CALL(mlx_fast_scaled_dot_product_attention(res, q, k, v, scale, mode, mask, sinks, s));
}
char* mlxc_quantize(mlx_array* wq, mlx_array* scales, mlx_array* biases, mlx_array w, int group, int bits, mlx_stream s) {
  char* err = NULL;
  mlx_array none = {NULL};
  mlx_vector_array out = mlx_vector_array_new();
  reset();
  TRY(mlx_quantize(&out, w, opt_int(group), opt_int(bits), "affine", none, s));
  if (mlx_vector_array_size(out) != 3) {
    err = strdup("mlxc: quantize returned an unexpected number of arrays");
    goto done;
  }
  TRY(mlx_vector_array_get(wq, out, 0));
  TRY(mlx_vector_array_get(scales, out, 1));
  TRY(mlx_vector_array_get(biases, out, 2));
done:
  mlx_vector_array_free(out);
  return err;
}
char* mlxc_dequantize(mlx_array* res, mlx_array wq, mlx_array scales, mlx_array biases, int group, int bits, mlx_stream s) {
  mlx_array none = {NULL};
  mlx_optional_dtype dt = {MLX_FLOAT32, false};
  CALL(mlx_dequantize(res, wq, scales, biases, opt_int(group), opt_int(bits), "affine", none, dt, s));
}
char* mlxc_quantized_matmul(mlx_array* res, mlx_array x, mlx_array wq, mlx_array scales, mlx_array biases, int transpose, int group, int bits, mlx_stream s) {
  CALL(mlx_quantized_matmul(res, x, wq, scales, biases, transpose != 0, opt_int(group), opt_int(bits), "affine", s));
}
char* mlxc_random_key(mlx_array* res, uint64_t seed) { CALL(mlx_random_key(res, seed)); }
char* mlxc_random_uniform(mlx_array* res, const int* shape, size_t n, mlx_dtype dt, float lo, float hi, mlx_array key, mlx_stream s) {
  char* err = NULL;
  mlx_array l = mlx_array_new_float32(lo), h = mlx_array_new_float32(hi);
  reset();
  TRY(mlx_random_uniform(res, l, h, shape, n, dt, key, s));
done:
  mlx_array_free(l);
  mlx_array_free(h);
  return err;
}
char* mlxc_random_normal(mlx_array* res, const int* shape, size_t n, mlx_dtype dt, float loc, float scale, mlx_array key, mlx_stream s) {
  CALL(mlx_random_normal(res, shape, n, dt, loc, scale, key, s));
}

char* mlxc_memory(size_t* active, size_t* peak, size_t* cache) {
  reset();
  if (mlx_get_active_memory(active) || mlx_get_peak_memory(peak) || mlx_get_cache_memory(cache))
    return take("mlx memory query failed");
  return NULL;
}
char* mlxc_reset_peak(void) { CALL(mlx_reset_peak_memory()); }
char* mlxc_clear_cache(void) { CALL(mlx_clear_cache()); }
char* mlxc_set_cache_limit(size_t* prev, size_t limit) { CALL(mlx_set_cache_limit(prev, limit)); }

char* mlxc_save_safetensors(const char* path, const char** names, const mlx_array* arrs, size_t n, const char** mkeys, const char** mvals, size_t nm) {
  char* err = NULL;
  mlx_map_string_to_array m = mlx_map_string_to_array_new();
  mlx_map_string_to_string md = mlx_map_string_to_string_new();
  reset();
  for (size_t i = 0; i < n; i++) TRY(mlx_map_string_to_array_insert(m, names[i], arrs[i]));
  for (size_t i = 0; i < nm; i++) TRY(mlx_map_string_to_string_insert(md, mkeys[i], mvals[i]));
  TRY(mlx_save_safetensors(path, m, md));
done:
  mlx_map_string_to_array_free(m);
  mlx_map_string_to_string_free(md);
  return err;
}

char* mlxc_load_safetensors(mlxc_st* st, const char* path, mlx_stream s) {
  reset();
  st->arrays = mlx_map_string_to_array_new();
  st->meta = mlx_map_string_to_string_new();
  if (mlx_load_safetensors(&st->arrays, &st->meta, path, s) != 0) {
    char* err = take("mlx_load_safetensors failed");
    mlxc_st_free(st);
    return err;
  }
  return NULL;
}

char* mlxc_st_arrays(mlxc_st* st, const char** names, mlx_array* arrs, size_t cap, size_t* n) {
  char* err = NULL;
  reset();
  mlx_map_string_to_array_iterator it = mlx_map_string_to_array_iterator_new(st->arrays);
  size_t i = 0;
  for (;;) {
    const char* k = NULL;
    mlx_array v = mlx_array_new();
    if (mlx_map_string_to_array_iterator_next(&k, &v, it) != 0) {
      mlx_array_free(v);
      break; // end of map
    }
    if (i >= cap) {
      mlx_array_free(v);
      err = strdup("mlxc: safetensors map larger than expected");
      break;
    }
    names[i] = k;
    arrs[i] = v;
    i++;
  }
  mlx_map_string_to_array_iterator_free(it);
  *n = i;
  return err;
}

char* mlxc_st_meta(mlxc_st* st, const char** keys, const char** vals, size_t cap, size_t* n) {
  reset();
  mlx_map_string_to_string_iterator it = mlx_map_string_to_string_iterator_new(st->meta);
  size_t i = 0;
  while (i < cap) {
    const char* k = NULL;
    const char* v = NULL;
    if (mlx_map_string_to_string_iterator_next(&k, &v, it) != 0) break;
    keys[i] = k;
    vals[i] = v;
    i++;
  }
  mlx_map_string_to_string_iterator_free(it);
  *n = i;
  return NULL;
}

void mlxc_st_free(mlxc_st* st) {
  mlx_map_string_to_array_free(st->arrays);
  mlx_map_string_to_string_free(st->meta);
  st->arrays.ctx = NULL;
  st->meta.ctx = NULL;
}

// ---- Llama block ----

// Temporaries of the block live in one pool freed at the end.
#define POOL 512
typedef struct {
  mlx_array a[POOL];
  int n;
} pool;

static mlx_array* fresh(pool* p) {
  p->a[p->n] = mlx_array_new();
  return &p->a[p->n++];
}

// stream_on says whether s runs on a device of type t (false when MLX
// cannot tell).
static bool stream_on(mlx_stream s, mlx_device_type t) {
  mlx_device d = mlx_device_new();
  mlx_device_type got;
  bool on = mlx_stream_get_device(&d, s) == 0 && mlx_device_get_type(&got, d) == 0 && got == t;
  mlx_device_free(d);
  return on;
}

// on_cuda says whether s runs on a CUDA GPU.
static bool on_cuda(mlx_stream s) {
  static int cuda = -1;  // whether this MLX build has CUDA; asked once
  if (cuda < 0) {
    bool c = false;
    cuda = mlx_cuda_is_available(&c) == 0 && c;
  }
  return cuda && stream_on(s, MLX_GPU);
}

// rms_norm is x·rsqrt(mean(x², -1) + eps)·w, in float32 whatever x's
// dtype. On CUDA, rows of up to 1,024 are written out in ordinary ops:
// MLX's fused CUDA kernel (before 0.32.1, ml-explore/mlx#3792) mixes rows'
// partial sums at some small widths (measured on an H200 with MLX 0.31.2:
// float32 rows of 256, 32 % off; the small preset's logits, rows of 384,
// 50-130 % off). Wider rows (the llama shapes' 2,048 and 3,072) keep the
// fused kernel, which was right there and saves ~6 kernels a norm.
static int rms_norm(pool* p, mlx_array* res, mlx_array x, mlx_array w, float eps, mlx_stream s) {
  size_t nd = mlx_array_ndim(x);
  if (nd == 0 || mlx_array_shape(x)[nd - 1] > 1024 || !on_cuda(s)) return mlx_fast_rms_norm(res, x, w, eps, s);
  mlx_array *xf = fresh(p), *sq = fresh(p), *ms = fresh(p), *v = fresh(p), *r = fresh(p), *y = fresh(p),
            *yt = fresh(p), *e = fresh(p);
  mlx_array_free(*e);
  *e = mlx_array_new_float(eps);
  return mlx_astype(xf, x, MLX_FLOAT32, s) != 0 || mlx_square(sq, *xf, s) != 0 ||
         mlx_mean_axis(ms, *sq, -1, true, s) != 0 || mlx_add(v, *ms, *e, s) != 0 || mlx_rsqrt(r, *v, s) != 0 ||
         mlx_multiply(y, *xf, *r, s) != 0 || mlx_astype(yt, *y, mlx_array_dtype(x), s) != 0 ||
         mlx_multiply(res, *yt, w, s) != 0;
}

char* mlxc_rms_norm(mlx_array* res, mlx_array x, mlx_array w, float eps, mlx_stream s) {
  reset();
  pool p = {.n = 0};
  int rc = rms_norm(&p, res, x, w, eps, s);
  for (int i = 0; i < p.n; i++) mlx_array_free(p.a[i]);
  return rc != 0 ? take("mlx call failed: rms_norm") : NULL;
}

// scatter_kv writes each row's new key k and value v into the caches kc
// and vc at (rows[i], cols[i]) along axes 0 and 2: one scatter per cache,
// in place when MLX can donate the cache's buffer (nothing else holds it).
static int scatter_kv(pool* p, mlx_array* k_out, mlx_array* v_out, mlx_array kc, mlx_array vc, mlx_array k,
                      mlx_array v, mlx_array rows, mlx_array cols, int B, int nkv, int hd, mlx_stream s) {
  int ush[5] = {B, 1, nkv, 1, hd};
  mlx_array *ku = fresh(p), *vu = fresh(p);
  if (mlx_reshape(ku, k, ush, 5, s) != 0 || mlx_reshape(vu, v, ush, 5, s) != 0) return 1;
  mlx_array idx[2] = {rows, cols};
  int axes[2] = {0, 2};
  mlx_vector_array vi = mlx_vector_array_new_data(idx, 2);
  int r = mlx_scatter(k_out, kc, vi, *ku, axes, 2, s) != 0 || mlx_scatter(v_out, vc, vi, *vu, axes, 2, s) != 0;
  mlx_vector_array_free(vi);
  return r;
}

static int linear(pool* p, mlx_array* res, mlx_array x, const mlxc_linear* l, mlx_stream s) {
  if (l->scales.ctx != NULL)
    return mlx_quantized_matmul(res, x, l->w, l->scales, l->biases, true, opt_int(l->group_size), opt_int(l->bits), "affine", s);
  if (l->transposed) return mlx_matmul(res, x, l->w, s);
  mlx_array* wt = fresh(p);
  if (mlx_transpose(wt, l->w, s) != 0) return 1;
  return mlx_matmul(res, x, *wt, s);
}

// residual_mlp is a layer's feed-forward half: x1 + down(silu(gate(h)) *
// up(h)) with h = rms_norm(x1).
static int residual_mlp(pool* p, mlx_array* out, mlx_array x1, const mlxc_block_weights* w, const mlxc_block_cfg* cfg,
                        mlx_stream s) {
  mlx_array *h = fresh(p), *g = fresh(p), *u = fresh(p), *sg = fresh(p), *act = fresh(p), *m = fresh(p), *d = fresh(p);
  return rms_norm(p, h, x1, w->mlp_norm, cfg->eps, s) != 0 || linear(p, g, *h, &w->gate, s) != 0 ||
         linear(p, u, *h, &w->up, s) != 0 || mlx_sigmoid(sg, *g, s) != 0 || mlx_multiply(act, *g, *sg, s) != 0 ||
         mlx_multiply(m, *act, *u, s) != 0 || linear(p, d, *m, &w->down, s) != 0 || mlx_add(out, x1, *d, s) != 0;
}

// norm_qkv is a layer's attention input: h = rms_norm(x), and its query,
// key and value projections.
static int norm_qkv(pool* p, mlx_array* q, mlx_array* k, mlx_array* v, mlx_array x, const mlxc_block_weights* w,
                    const mlxc_block_cfg* cfg, mlx_stream s) {
  mlx_array* h = fresh(p);
  return rms_norm(p, h, x, w->attn_norm, cfg->eps, s) != 0 || linear(p, q, *h, &w->q, s) != 0 ||
         linear(p, k, *h, &w->k, s) != 0 || linear(p, v, *h, &w->v, s) != 0;
}

// heads reshapes [B, L, n*hd] to [B, n, L, hd]. With one token the
// transpose only moves a unit axis, so one reshape does it: graph nodes are
// most of a decode step's Go-side cost.
static int heads(pool* p, mlx_array* res, mlx_array x, int B, int L, int n, int hd, mlx_stream s) {
  if (L == 1) {
    int shape1[4] = {B, n, 1, hd};
    return mlx_reshape(res, x, shape1, 4, s);
  }
  int shape[4] = {B, L, n, hd};
  int perm[4] = {0, 2, 1, 3};
  mlx_array* r = fresh(p);
  if (mlx_reshape(r, x, shape, 4, s) != 0) return 1;
  return mlx_transpose_axes(res, *r, perm, 4, s);
}

// block_core is one Llama decoder layer on x [B, L, hidden]. Positions come
// from offset, or per row from offsets ([B] int32) when its ctx is set; the
// cache (k_cache/v_cache, ctx NULL for none) is concatenated before the new
// keys; attention is causal, or uses mask (boolean, broadcastable to
// [B, heads, L, keys]) when its ctx is set. Temporaries go to p.
//
// With sl set, the cache is instead a slot cache [R, n_kv, C, hd] (see
// mlxc_llama_block_slots): the new keys and values are scattered into it
// at (row i, column sl->cols[i]), attention reads the view
// [:B, :, :sl->width], and k_out/v_out are the whole updated slot cache.
static char* block_core(pool* p, mlx_array* out, mlx_array* k_out, mlx_array* v_out, mlx_array x,
                        const mlxc_block_weights* w, const mlxc_block_cfg* cfg,
                        mlx_array k_cache, mlx_array v_cache, int offset, mlx_array offsets,
                        mlx_array mask, const mlxc_slot_step* sl, mlx_stream s) {
  char* err = NULL;
  if (mlx_array_ndim(x) != 3) return strdup("mlxc: block input must be [batch, tokens, hidden]");
  const int* xs = mlx_array_shape(x);
  int B = xs[0], L = xs[1];
  int nh = cfg->n_heads, nkv = cfg->n_kv_heads, hd = cfg->head_dim;
  mlx_optional_float base = {cfg->rope_base, cfg->rope_freqs.ctx == NULL};

  mlx_array *q = fresh(p), *k = fresh(p), *v = fresh(p);
  TRY(norm_qkv(p, q, k, v, x, w, cfg, s));
  mlx_array *qh = fresh(p), *kh = fresh(p), *vh = fresh(p), *qr = fresh(p), *kr = fresh(p);
  TRY(heads(p, qh, *q, B, L, nh, hd, s));
  TRY(heads(p, kh, *k, B, L, nkv, hd, s));
  TRY(heads(p, vh, *v, B, L, nkv, hd, s));
  if (offsets.ctx != NULL) {
    TRY(mlx_fast_rope_dynamic(qr, *qh, hd, false, base, 1.0f, offsets, cfg->rope_freqs, s));
    TRY(mlx_fast_rope_dynamic(kr, *kh, hd, false, base, 1.0f, offsets, cfg->rope_freqs, s));
  } else {
    TRY(mlx_fast_rope(qr, *qh, hd, false, base, 1.0f, offset, cfg->rope_freqs, s));
    TRY(mlx_fast_rope(kr, *kh, hd, false, base, 1.0f, offset, cfg->rope_freqs, s));
  }
  mlx_array *kall = fresh(p), *vall = fresh(p), *kfull = fresh(p), *vfull = fresh(p);
  if (sl != NULL) {
    // Every row's new column goes in with one scatter per cache, and one
    // slice gives the attended view: no per-row work and no copy.
    TRY(scatter_kv(p, kfull, vfull, k_cache, v_cache, *kr, *vh, sl->rows, sl->cols, B, nkv, hd, s));
    int start[4] = {0, 0, 0, 0}, stop[4] = {B, nkv, sl->width, hd}, str[4] = {1, 1, 1, 1};
    TRY(mlx_slice(kall, *kfull, start, 4, stop, 4, str, 4, s));
    TRY(mlx_slice(vall, *vfull, start, 4, stop, 4, str, 4, s));
  } else if (k_cache.ctx != NULL) {
    mlx_array pk[2] = {k_cache, *kr}, pv[2] = {v_cache, *vh};
    mlx_vector_array vk = mlx_vector_array_new_data(pk, 2), vv = mlx_vector_array_new_data(pv, 2);
    int rk = mlx_concatenate_axis(kall, vk, 2, s);
    int rv = rk ? 1 : mlx_concatenate_axis(vall, vv, 2, s);
    mlx_vector_array_free(vk);
    mlx_vector_array_free(vv);
    TRY(rk || rv);
  } else {
    TRY(mlx_array_set(kall, *kr));
    TRY(mlx_array_set(vall, *vh));
  }
  mlx_array none = {NULL};
  mlx_array *att = fresh(p), *att2 = fresh(p), *att3 = fresh(p), *o = fresh(p), *x1 = fresh(p);
  float scale = 1.0f / sqrtf((float)hd);
  if (mask.ctx != NULL) {
    TRY(mlx_fast_scaled_dot_product_attention(att, *qr, *kall, *vall, scale, "array", mask, none, s));
  } else {
    TRY(mlx_fast_scaled_dot_product_attention(att, *qr, *kall, *vall, scale, L > 1 ? "causal" : "", none, none, s));
  }
  int perm[4] = {0, 2, 1, 3};
  int flat[3] = {B, L, nh * hd};
  if (L == 1) {
    TRY(mlx_reshape(att3, *att, flat, 3, s));
  } else {
    TRY(mlx_transpose_axes(att2, *att, perm, 4, s));
    TRY(mlx_reshape(att3, *att2, flat, 3, s));
  }
  TRY(linear(p, o, *att3, &w->o, s));
  TRY(mlx_add(x1, x, *o, s));
  TRY(residual_mlp(p, out, *x1, w, cfg, s));
  TRY(mlx_array_set(k_out, sl != NULL ? *kfull : *kall));
  TRY(mlx_array_set(v_out, sl != NULL ? *vfull : *vall));
done:
  return err;
}

char* mlxc_llama_block(mlx_array* out, mlx_array* k_out, mlx_array* v_out, mlx_array x,
                       const mlxc_block_weights* w, const mlxc_block_cfg* cfg,
                       mlx_array k_cache, mlx_array v_cache, int offset, int eval, mlx_stream s) {
  char* err = NULL;
  pool p;
  p.n = 0;
  mlx_array none = {NULL};
  reset();
  err = block_core(&p, out, k_out, v_out, x, w, cfg, k_cache, v_cache, offset, none, none, NULL, s);
  if (err == NULL && eval) {
    mlx_array res[3] = {*out, *k_out, *v_out};
    mlx_vector_array vr = mlx_vector_array_new_data(res, 3);
    int rc = mlx_eval(vr);
    mlx_vector_array_free(vr);
    if (rc != 0) err = take("mlx_eval failed");
  }
  for (int i = 0; i < p.n; i++) mlx_array_free(p.a[i]);
  return err;
}

char* mlxc_llama_block_padded(mlx_array* out, mlx_array* k_outs, mlx_array* v_outs, mlx_array x,
                              const mlxc_block_weights* w, const mlxc_block_cfg* cfg,
                              const mlx_array* k_caches, const mlx_array* v_caches, const int* lens,
                              mlx_stream s) {
  char* err = NULL;
  pool p;
  p.n = 0;
  reset();
  if (mlx_array_ndim(x) != 3 || mlx_array_shape(x)[1] != 1) return strdup("mlxc: padded block input must be [batch, 1, hidden]");
  int B = mlx_array_shape(x)[0];
  if (B > (POOL - 80) / 2) return strdup("mlxc: padded block: too many rows");
  int T = 0;
  for (int i = 0; i < B; i++) {
    if (lens[i] <= 0) return strdup("mlxc: padded block: every row needs a cache");
    if (lens[i] > T) T = lens[i];
  }
  mlx_array* kp = malloc(sizeof(mlx_array) * 2 * B);
  mlx_array* vp = kp + B;
  bool* keep = malloc(sizeof(bool) * B * (T + 1));
  mlx_array zero = mlx_array_new_float32(0);
  mlx_array offs = mlx_array_new_data(lens, &B, 1, MLX_INT32);
  int mshape[4] = {B, 1, 1, T + 1};
  for (int i = 0; i < B; i++)
    for (int j = 0; j <= T; j++) keep[i * (T + 1) + j] = j >= T - lens[i];
  mlx_array mask = mlx_array_new_data(keep, mshape, 4, MLX_BOOL);
  mlx_array *kc = fresh(&p), *vc = fresh(&p), *kall = fresh(&p), *vall = fresh(&p);
  int npad = 0;
  for (int i = 0; i < B; i++) {
    // Left padding keeps every row's tokens at the end, so the new token
    // lands at column T for all rows and each row's cache is one slice.
    if (lens[i] == T) {
      kp[i] = k_caches[i];
      vp[i] = v_caches[i];
      continue;
    }
    int ax = 2, lo = T - lens[i], hi = 0;
    mlx_array *a = fresh(&p), *b = fresh(&p);
    npad++;
    TRY(mlx_pad(a, k_caches[i], &ax, 1, &lo, 1, &hi, 1, zero, "constant", s));
    TRY(mlx_pad(b, v_caches[i], &ax, 1, &lo, 1, &hi, 1, zero, "constant", s));
    kp[i] = *a;
    vp[i] = *b;
  }
  {
    mlx_vector_array vk = mlx_vector_array_new_data(kp, B), vv = mlx_vector_array_new_data(vp, B);
    int rk = mlx_concatenate_axis(kc, vk, 0, s);
    int rv = rk ? 1 : mlx_concatenate_axis(vc, vv, 0, s);
    mlx_vector_array_free(vk);
    mlx_vector_array_free(vv);
    TRY(rk || rv);
  }
  {
    char* e = block_core(&p, out, kall, vall, x, w, cfg, *kc, *vc, 0, offs, mask, NULL, s);
    if (e != NULL) {
      err = e;
      goto done;
    }
  }
  for (int i = 0; i < B; i++) {
    const int* sh = mlx_array_shape(*kall);
    int start[4] = {i, 0, T - lens[i], 0}, stop[4] = {i + 1, sh[1], T + 1, sh[3]}, str[4] = {1, 1, 1, 1};
    k_outs[i] = mlx_array_new();
    v_outs[i] = mlx_array_new();
    TRY(mlx_slice(&k_outs[i], *kall, start, 4, stop, 4, str, 4, s));
    TRY(mlx_slice(&v_outs[i], *vall, start, 4, stop, 4, str, 4, s));
  }
done:
  (void)npad;
  for (int i = 0; i < p.n; i++) mlx_array_free(p.a[i]);
  mlx_array_free(zero);
  mlx_array_free(offs);
  mlx_array_free(mask);
  free(kp);
  free(keep);
  return err;
}

char* mlxc_slot_step_new(mlxc_slot_step* st, const int* lens, int B, int width) {
  reset();
  if (B <= 0 || width <= 0) return strdup("mlxc: slot step needs rows and a width");
  int* rows = malloc(sizeof(int) * B);
  bool* keep = malloc(sizeof(bool) * B * width);
  for (int i = 0; i < B; i++) {
    rows[i] = i;
    for (int j = 0; j < width; j++) keep[i * width + j] = j <= lens[i];
  }
  int mshape[4] = {B, 1, 1, width};
  st->rows = mlx_array_new_data(rows, &B, 1, MLX_INT32);
  st->cols = mlx_array_new_data(lens, &B, 1, MLX_INT32);
  st->mask = mlx_array_new_data(keep, mshape, 4, MLX_BOOL);
  st->width = width;
  free(rows);
  free(keep);
  if (st->rows.ctx == NULL || st->cols.ctx == NULL || st->mask.ctx == NULL) {
    mlxc_slot_step_free(st);
    return take("mlxc: slot step arrays failed");
  }
  return NULL;
}

void mlxc_slot_step_free(mlxc_slot_step* st) {
  if (st->rows.ctx) mlx_array_free(st->rows);
  if (st->cols.ctx) mlx_array_free(st->cols);
  if (st->mask.ctx) mlx_array_free(st->mask);
  st->rows.ctx = st->cols.ctx = st->mask.ctx = NULL;
}

char* mlxc_llama_block_slots(mlx_array* out, mlx_array* k_out, mlx_array* v_out, mlx_array x,
                             const mlxc_block_weights* w, const mlxc_block_cfg* cfg,
                             mlx_array k_cache, mlx_array v_cache, const mlxc_slot_step* st,
                             mlx_stream s) {
  char* err = NULL;
  pool p;
  p.n = 0;
  reset();
  if (mlx_array_ndim(x) != 3 || mlx_array_shape(x)[1] != 1) return strdup("mlxc: slot block input must be [batch, 1, hidden]");
  err = block_core(&p, out, k_out, v_out, x, w, cfg, k_cache, v_cache, 0, st->cols, st->mask, st, s);
  for (int i = 0; i < p.n; i++) mlx_array_free(p.a[i]);
  return err;
}

// ---- Slot step function ----

typedef struct {
  int n_layers;
  mlxc_block_cfg cfg;
  mlxc_block_weights* layers;
  mlxc_linear embed, head;
  mlx_array norm;
  mlx_stream s;
  mlx_closure raw, fn; // fn: compiled, or raw again when not compiled
  int compiled;
  // On the CPU backend RoPE and attention have no kernels: MLX expands
  // them into graphs of ordinary ops, recomputing RoPE's angles for every
  // call. There the step writes them out itself (slot_layer), computing
  // the angles once per step for all layers: fewer nodes to replay.
  int cpu;
  // Names the function in MLX's compile cache: a number never reused, so
  // that a new function cannot meet an old one's tapes (the cache is per
  // OS thread, and an erase on another thread than the calls' misses).
  uintptr_t id;
  int traces; // calls of slot_graph: one per step uncompiled, one per input shapes compiled
  mlx_array scale, neg; // 1/sqrt(head_dim) and -inf in the activation dtype
  // A failure inside the traced function reaches mlx_closure_apply as
  // mlx-c's generic "non-zero value" error: the real message waits here.
  char err[1024];
} slot_fn;

static mlx_array own(mlx_array a) {
  mlx_array r = {NULL};
  if (a.ctx == NULL) return r;
  r = mlx_array_new();
  mlx_array_set(&r, a);
  return r;
}

static void drop(mlx_array* a) {
  if (a->ctx != NULL) mlx_array_free(*a);
  a->ctx = NULL;
}

static mlxc_linear own_linear(const mlxc_linear* l) {
  mlxc_linear o = *l;
  o.w = own(l->w);
  o.scales = own(l->scales);
  o.biases = own(l->biases);
  return o;
}

static void drop_linear(mlxc_linear* l) {
  drop(&l->w);
  drop(&l->scales);
  drop(&l->biases);
}

static void slot_fn_dtor(void* payload) {
  slot_fn* f = payload;
  for (int l = 0; l < f->n_layers; l++) {
    mlxc_block_weights* w = &f->layers[l];
    drop(&w->attn_norm);
    drop(&w->mlp_norm);
    mlxc_linear* ls[7] = {&w->q, &w->k, &w->v, &w->o, &w->gate, &w->up, &w->down};
    for (int i = 0; i < 7; i++) drop_linear(ls[i]);
  }
  free(f->layers);
  drop_linear(&f->embed);
  drop_linear(&f->head);
  drop(&f->norm);
  drop(&f->cfg.rope_freqs);
  drop(&f->scale);
  drop(&f->neg);
  mlx_stream_free(f->s);
  free(f);
}

// The per-step arrays every layer shares.
typedef struct {
  mlx_array rows, lens; // [B] int32: scatter rows 0..B-1, and each row's column and position
  mlx_array mask;       // [B, 1, 1, C] bool: column j visible to row i iff j <= lens[i]
  mlx_array cos, sin;   // [B, 1, 1, head_dim/2] RoPE factors (f->cpu only)
} slot_ctx;

// rope_rot rotates x [B, n, 1, hd] by c's factors, as MLX's own RoPE
// fallback does (non-traditional layout: halves, not pairs).
static int rope_rot(pool* p, mlx_array* res, mlx_array x, int B, int n, int hd, const slot_ctx* c, mlx_stream s) {
  int h = hd / 2;
  int st[4] = {0, 0, 0, 0}, mid[4] = {B, n, 1, h}, st2[4] = {0, 0, 0, h}, end[4] = {B, n, 1, hd}, one[4] = {1, 1, 1, 1};
  mlx_array *x1 = fresh(p), *x2 = fresh(p), *a = fresh(p), *b = fresh(p), *o1 = fresh(p), *c1 = fresh(p), *d = fresh(p),
            *o2 = fresh(p);
  if (mlx_slice(x1, x, st, 4, mid, 4, one, 4, s) || mlx_slice(x2, x, st2, 4, end, 4, one, 4, s)) return 1;
  if (mlx_multiply(a, *x1, c->cos, s) || mlx_multiply(b, *x2, c->sin, s) || mlx_subtract(o1, *a, *b, s)) return 1;
  if (mlx_multiply(c1, *x1, c->sin, s) || mlx_multiply(d, *x2, c->cos, s) || mlx_add(o2, *c1, *d, s)) return 1;
  mlx_array parts[2] = {*o1, *o2};
  mlx_vector_array v = mlx_vector_array_new_data(parts, 2);
  int rc = mlx_concatenate_axis(res, v, 3, s);
  mlx_vector_array_free(v);
  return rc;
}

// slot_layer is one decoder layer of a slot step on x [B, hidden] (2-D:
// one token per row needs no sequence axis, and 2-D projections need no
// flatten/unflatten around their matmuls); kc/vc the layer's slot caches
// [R, kv, C, hd]. Same computation as block_core with a slot step of
// width C.
static char* slot_layer(pool* p, slot_fn* f, mlx_array* out, mlx_array* k_out, mlx_array* v_out, mlx_array x,
                        const mlxc_block_weights* w, mlx_array kc, mlx_array vc, const slot_ctx* c, mlx_stream s) {
  char* err = NULL;
  const mlxc_block_cfg* cfg = &f->cfg;
  int B = mlx_array_shape(x)[0], R = mlx_array_shape(kc)[0], C = mlx_array_shape(kc)[2];
  int nh = cfg->n_heads, nkv = cfg->n_kv_heads, hd = cfg->head_dim;
  mlx_optional_float base = {cfg->rope_base, cfg->rope_freqs.ctx == NULL};
  mlx_array *q = fresh(p), *k = fresh(p), *v = fresh(p);
  TRY(norm_qkv(p, q, k, v, x, w, cfg, s));
  int qs[4] = {B, nh, 1, hd}, ks[4] = {B, nkv, 1, hd};
  mlx_array *qh = fresh(p), *kh = fresh(p), *qr = fresh(p), *kr = fresh(p);
  TRY(mlx_reshape(qh, *q, qs, 4, s));
  TRY(mlx_reshape(kh, *k, ks, 4, s));
  if (f->cpu) {
    TRY(rope_rot(p, qr, *qh, B, nh, hd, c, s));
    TRY(rope_rot(p, kr, *kh, B, nkv, hd, c, s));
  } else {
    TRY(mlx_fast_rope_dynamic(qr, *qh, hd, false, base, 1.0f, c->lens, cfg->rope_freqs, s));
    TRY(mlx_fast_rope_dynamic(kr, *kh, hd, false, base, 1.0f, c->lens, cfg->rope_freqs, s));
  }
  mlx_array *kall = fresh(p), *vall = fresh(p);
  TRY(scatter_kv(p, k_out, v_out, kc, vc, *kr, *v, c->rows, c->lens, B, nkv, hd, s));
  if (B < R) {
    int start[4] = {0, 0, 0, 0}, stop[4] = {B, nkv, C, hd}, str[4] = {1, 1, 1, 1};
    TRY(mlx_slice(kall, *k_out, start, 4, stop, 4, str, 4, s));
    TRY(mlx_slice(vall, *v_out, start, 4, stop, 4, str, 4, s));
  } else {
    TRY(mlx_array_set(kall, *k_out));
    TRY(mlx_array_set(vall, *v_out));
  }
  mlx_array *att = fresh(p), *att2 = fresh(p);
  if (f->cpu) {
    // Grouped-query attention with the query heads of one KV head as the
    // rows of one matmul: [B, kv, rep, hd] x [B, kv, hd, C].
    int g4[4] = {B, nkv, nh / nkv, hd}, perm[4] = {0, 1, 3, 2};
    mlx_array *qs2 = fresh(p), *qg = fresh(p), *kt = fresh(p), *sc = fresh(p), *sm = fresh(p), *pr = fresh(p);
    TRY(mlx_multiply(qs2, *qr, f->scale, s));
    TRY(mlx_reshape(qg, *qs2, g4, 4, s));
    TRY(mlx_transpose_axes(kt, *kall, perm, 4, s));
    TRY(mlx_matmul(sc, *qg, *kt, s));
    TRY(mlx_where(sm, c->mask, *sc, f->neg, s));
    TRY(mlx_softmax_axis(pr, *sm, -1, true, s));
    TRY(mlx_matmul(att, *pr, *vall, s));
  } else {
    mlx_array none = {NULL};
    float scale = 1.0f / sqrtf((float)hd);
    TRY(mlx_fast_scaled_dot_product_attention(att, *qr, *kall, *vall, scale, "array", c->mask, none, s));
  }
  int flat[2] = {B, nh * hd};
  TRY(mlx_reshape(att2, *att, flat, 2, s));
  mlx_array *o = fresh(p), *x1 = fresh(p);
  TRY(linear(p, o, *att2, &w->o, s));
  TRY(mlx_add(x1, x, *o, s));
  TRY(residual_mlp(p, out, *x1, w, cfg, s));
done:
  return err;
}

// slot_graph builds the step: in = ids, lens, k[0..L-1], v[0..L-1]; res
// gets toks, logits, k'[0..L-1], v'[0..L-1].
static char* slot_graph(slot_fn* f, mlx_vector_array* res, const mlx_vector_array in) {
  char* err = NULL;
  int L = f->n_layers;
  mlx_stream s = f->s;
  if (mlx_vector_array_size(in) != (size_t)(2 + 2 * L)) return strdup("mlxc: slot step: wrong number of inputs");
  mlx_array ids = mlx_array_new();
  mlx_array* kv = calloc(2 * L, sizeof(mlx_array));
  mlx_array* outs = calloc(2 + 2 * L, sizeof(mlx_array));
  pool* p = malloc(sizeof(pool));
  p->n = 0;
  mlx_array x = mlx_array_new();
  slot_ctx c = {mlx_array_new(), mlx_array_new(), mlx_array_new(), mlx_array_new(), mlx_array_new()};
  for (int i = 0; i < 2 + 2 * L; i++) outs[i] = mlx_array_new();
  for (int i = 0; i < 2 * L; i++) kv[i] = mlx_array_new();
  TRY(mlx_vector_array_get(&ids, in, 0));
  TRY(mlx_vector_array_get(&c.lens, in, 1));
  for (int i = 0; i < 2 * L; i++) TRY(mlx_vector_array_get(&kv[i], in, 2 + i));
  if (mlx_array_ndim(ids) != 1 || mlx_array_ndim(kv[0]) != 4) {
    err = strdup("mlxc: slot step: ids must be [B] and caches [R, kv, C, hd]");
    goto done;
  }
  int B = mlx_array_shape(ids)[0], C = mlx_array_shape(kv[0])[2];
  {
    // The mask, the scatter's row indices and RoPE's angles come from lens
    // inside the graph, so that nothing but lens changes between steps.
    mlx_array *ar = fresh(p), *lr = fresh(p);
    int lsh[4] = {B, 1, 1, 1};
    TRY(mlx_arange(&c.rows, 0, B, 1, MLX_INT32, s));
    TRY(mlx_arange(ar, 0, C, 1, MLX_INT32, s));
    TRY(mlx_reshape(lr, c.lens, lsh, 4, s));
    TRY(mlx_less_equal(&c.mask, *ar, *lr, s));
    if (f->cpu) {
      int hd = f->cfg.head_dim, h = hd / 2;
      mlx_array *pos = fresh(p), *inv = fresh(p), *th = fresh(p), *cs = fresh(p), *sn = fresh(p);
      TRY(mlx_astype(pos, *lr, MLX_FLOAT32, s));
      if (f->cfg.rope_freqs.ctx != NULL) {
        TRY(mlx_reciprocal(inv, f->cfg.rope_freqs, s));
      } else {
        mlx_array *ex = fresh(p), *e2 = fresh(p);
        mlx_array k = mlx_array_new_float32(logf(f->cfg.rope_base) / h);
        int rc = mlx_arange(ex, 0, -h, -1, MLX_FLOAT32, s) || mlx_multiply(e2, *ex, k, s) || mlx_exp(inv, *e2, s);
        mlx_array_free(k);
        TRY(rc);
      }
      mlx_dtype t = mlx_array_dtype(f->norm);
      TRY(mlx_multiply(th, *pos, *inv, s));
      TRY(mlx_cos(cs, *th, s));
      TRY(mlx_sin(sn, *th, s));
      TRY(mlx_astype(&c.cos, *cs, t, s));
      TRY(mlx_astype(&c.sin, *sn, t, s));
    }
  }
  {
    const mlxc_linear* em = &f->embed;
    if (em->scales.ctx == NULL) {
      TRY(mlx_take_axis(&x, em->w, ids, 0, s));
    } else {
      mlx_array *w = fresh(p), *sc = fresh(p), *bi = fresh(p);
      mlx_array none = {NULL};
      mlx_optional_dtype dt = {MLX_FLOAT32, false};
      TRY(mlx_take_axis(w, em->w, ids, 0, s));
      TRY(mlx_take_axis(sc, em->scales, ids, 0, s));
      TRY(mlx_take_axis(bi, em->biases, ids, 0, s));
      TRY(mlx_dequantize(&x, *w, *sc, *bi, opt_int(em->group_size), opt_int(em->bits), "affine", none, dt, s));
    }
  }
  for (int l = 0; l < L; l++) {
    mlx_array o = mlx_array_new();
    err = slot_layer(p, f, &o, &outs[2 + l], &outs[2 + L + l], x, &f->layers[l], kv[l], kv[L + l], &c, s);
    // The layer's temporaries go now: a pool holds one layer's.
    for (int i = 0; i < p->n; i++) mlx_array_free(p->a[i]);
    p->n = 0;
    mlx_array_free(x);
    x = o;
    if (err != NULL) goto done;
  }
  {
    mlx_array* nrm = fresh(p);
    TRY(rms_norm(p, nrm, x, f->norm, f->cfg.eps, s));
    TRY(linear(p, &outs[1], *nrm, &f->head, s));
    TRY(mlx_argmax_axis(&outs[0], outs[1], -1, false, s));
  }
  TRY(mlx_vector_array_set_data(res, outs, 2 + 2 * L));
done:
  for (int i = 0; i < p->n; i++) mlx_array_free(p->a[i]);
  free(p);
  mlx_array_free(c.rows);
  mlx_array_free(c.lens);
  mlx_array_free(c.mask);
  mlx_array_free(c.cos);
  mlx_array_free(c.sin);
  mlx_array_free(x);
  mlx_array_free(ids);
  for (int i = 0; i < 2 * L; i++) mlx_array_free(kv[i]);
  for (int i = 0; i < 2 + 2 * L; i++) mlx_array_free(outs[i]);
  free(kv);
  free(outs);
  return err;
}

static int slot_fn_call(mlx_vector_array* res, const mlx_vector_array in, void* payload) {
  slot_fn* f = payload;
  f->traces++;
  char* err = slot_graph(f, res, in);
  if (err == NULL) return 0;
  snprintf(f->err, sizeof f->err, "%s", err);
  free(err);
  return 1;
}

char* mlxc_slot_fn_new(mlxc_slot_fn* out, const mlxc_block_weights* layers, int n_layers, const mlxc_block_cfg* cfg,
                       const mlxc_linear* embed, const mlxc_linear* head, mlx_array norm, int compiled, mlx_stream s) {
  reset();
  if (n_layers <= 0) return strdup("mlxc: slot step function needs layers");
  slot_fn* f = calloc(1, sizeof(slot_fn));
  f->n_layers = n_layers;
  f->cfg = *cfg;
  f->cfg.rope_freqs = own(cfg->rope_freqs);
  f->layers = calloc(n_layers, sizeof(mlxc_block_weights));
  for (int l = 0; l < n_layers; l++) {
    const mlxc_block_weights* w = &layers[l];
    mlxc_block_weights* d = &f->layers[l];
    d->attn_norm = own(w->attn_norm);
    d->mlp_norm = own(w->mlp_norm);
    d->q = own_linear(&w->q);
    d->k = own_linear(&w->k);
    d->v = own_linear(&w->v);
    d->o = own_linear(&w->o);
    d->gate = own_linear(&w->gate);
    d->up = own_linear(&w->up);
    d->down = own_linear(&w->down);
  }
  f->embed = own_linear(embed);
  f->head = own_linear(head);
  f->norm = own(norm);
  f->s = mlx_stream_new();
  mlx_stream_set(&f->s, s);
  f->compiled = compiled;
  {
    f->cpu = stream_on(s, MLX_CPU);
    // Constants in the activation dtype, so that they promote nothing.
    mlx_dtype dt = mlx_array_dtype(norm);
    mlx_array sc = mlx_array_new_float32(1.0f / sqrtf((float)cfg->head_dim)), ng = mlx_array_new_float32(-INFINITY);
    f->scale = mlx_array_new();
    f->neg = mlx_array_new();
    int rc = mlx_astype(&f->scale, sc, dt, s) || mlx_astype(&f->neg, ng, dt, s) || mlx_array_eval(f->scale) ||
             mlx_array_eval(f->neg);
    mlx_array_free(sc);
    mlx_array_free(ng);
    if (rc) {
      char* err = take("mlxc: slot step constants failed");
      slot_fn_dtor(f);
      return err;
    }
  }
  // The closure owns f from here: its destructor runs when the last copy
  // (raw, or the compiled wrapper holding raw) is freed.
  f->raw = mlx_closure_new_func_payload(slot_fn_call, f, slot_fn_dtor);
  if (f->raw.ctx == NULL) return take("mlx_closure_new_func_payload failed");
  f->fn = mlx_closure_new();
  if (compiled) {
    static _Atomic uintptr_t next_id = 1;
    f->id = next_id++;
    if (mlx_detail_compile(&f->fn, f->raw, f->id, false, NULL, 0) != 0) {
      char* err = take("mlx_detail_compile failed");
      mlx_closure_free(f->fn);
      mlx_closure_free(f->raw);
      return err;
    }
  } else {
    mlx_closure_set(&f->fn, f->raw);
  }
  out->p = f;
  return NULL;
}

char* mlxc_slot_fn_apply(mlxc_slot_fn fp, mlx_array* toks, mlx_array* logits, mlx_array* k_outs, mlx_array* v_outs,
                         mlx_array ids, mlx_array lens, const mlx_array* k, const mlx_array* v) {
  slot_fn* f = fp.p;
  int L = f->n_layers;
  char* err = NULL;
  reset();
  f->err[0] = 0;
  mlx_vector_array in = mlx_vector_array_new(), res = mlx_vector_array_new();
  TRY(mlx_vector_array_append_value(in, ids));
  TRY(mlx_vector_array_append_value(in, lens));
  for (int l = 0; l < L; l++) TRY(mlx_vector_array_append_value(in, k[l]));
  for (int l = 0; l < L; l++) TRY(mlx_vector_array_append_value(in, v[l]));
  if (mlx_closure_apply(&res, f->fn, in) != 0) {
    err = f->err[0] ? strdup(f->err) : take("mlx_closure_apply failed");
    goto done;
  }
  // The inputs go before the outputs are handed out, so that the caller's
  // dropping its own cache handles leaves the scatters sole owners (MLX
  // then writes in place).
  mlx_vector_array_free(in);
  in.ctx = NULL;
  if (mlx_vector_array_size(res) != (size_t)(2 + 2 * L)) {
    err = strdup("mlxc: slot step: wrong number of outputs");
    goto done;
  }
  *toks = mlx_array_new();
  *logits = mlx_array_new();
  TRY(mlx_vector_array_get(toks, res, 0));
  TRY(mlx_vector_array_get(logits, res, 1));
  for (int l = 0; l < L; l++) {
    k_outs[l] = mlx_array_new();
    v_outs[l] = mlx_array_new();
    TRY(mlx_vector_array_get(&k_outs[l], res, 2 + l));
    TRY(mlx_vector_array_get(&v_outs[l], res, 2 + L + l));
  }
done:
  if (in.ctx) mlx_vector_array_free(in);
  mlx_vector_array_free(res);
  return err;
}

int mlxc_slot_fn_traces(mlxc_slot_fn fp) { return ((slot_fn*)fp.p)->traces; }

char* mlxc_slot_fn_forget(mlxc_slot_fn fp) {
  slot_fn* f = fp.p;
  if (!f->compiled) return NULL;
  CALL(mlx_detail_compile_erase(f->id));
}

void mlxc_slot_fn_free(mlxc_slot_fn* fp) {
  slot_fn* f = fp->p;
  if (f == NULL) return;
  fp->p = NULL;
  uintptr_t id = f->id;
  int compiled = f->compiled;
  mlx_closure fn = f->fn, raw = f->raw;
  // Erasing the cache entry drops its tapes (and their references to the
  // weights); freeing the closures then runs slot_fn_dtor.
  if (compiled) mlx_detail_compile_erase(id);
  mlx_closure_free(fn);
  mlx_closure_free(raw);
}

char* mlxc_slice_update(mlx_array* res, mlx_array a, mlx_array upd, const int* start, const int* stop, size_t n, mlx_stream s) {
  int str[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  if (n > 8) return strdup("mlxc: slice update of more than 8 axes");
  CALL(mlx_slice_update(res, a, upd, start, n, stop, n, str, n, s));
}

char* mlxc_pad_zero(mlx_array* res, mlx_array a, const int* high, size_t n, mlx_stream s) {
  char* err = NULL;
  int axes[8], low[8];
  if (n > 8) return strdup("mlxc: pad of more than 8 axes");
  for (size_t i = 0; i < n; i++) {
    axes[i] = (int)i;
    low[i] = 0;
  }
  mlx_array zero = mlx_array_new_float32(0);
  reset();
  TRY(mlx_pad(res, a, axes, n, low, n, high, n, zero, "constant", s));
done:
  mlx_array_free(zero);
  return err;
}
