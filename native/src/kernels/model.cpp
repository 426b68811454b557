// model_forward: one Llama step over a paged KV cache (see model.h); model_create packs HF tensors into the
// native layout (q/k/v stacked, gate/up stacked, unless their storage types differ; f32, bf16 or a GGML quantized type per
// matrix). Each op is a kernel from kernels.h; this file
// only sequences them and owns the activation buffers.
#include "model.h"

#include <cstring>
#include <new>

namespace {

size_t align_up(size_t n) { return (n + 63) / 64 * 64; }

}  // namespace

// The storage type of a matrix with `cols` columns from `src` under the requested wtype (see model.h).
static WeightType stored_type(WeightType wtype, const WeightSource& src, size_t cols) {
  if (wtype == WEIGHT_AUTO) return src.quant ? src.quant_type : WEIGHT_F32;
  if (!weight_is_quantized(wtype)) return wtype;
  if (cols % quant_block_elems(wtype) == 0) return wtype;
  return cols % Q8_0_BLOCK == 0 ? WEIGHT_Q8_0 : WEIGHT_F32;
}

std::unique_ptr<Model> model_create(const ModelConfig& cfg, WeightType wtype,
                                    const std::unordered_map<std::string, WeightSource>& weights, int threads,
                                    std::string* error) {
  auto m = std::make_unique<Model>();
  m->cfg = cfg;
  m->wtype = wtype;
  const size_t C = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  const size_t qd = static_cast<size_t>(cfg.num_heads) * cfg.head_dim;
  const size_t kvd = static_cast<size_t>(cfg.num_kv_heads) * cfg.head_dim;

  // First pass: layout (offsets into one allocation) and a length check of every source; second: copy/convert.
  struct Copy {
    size_t offset;
    WeightSource src;
    size_t rows, cols;
    WeightType type;  // stored type
  };
  std::vector<Copy> copies;
  size_t total = 0;
  auto reserve = [&](size_t bytes) {
    size_t off = total;
    total = align_up(total + bytes);
    return off;
  };
  // The source of `name` as (rows, cols), its length checked; nullptr (and *error) when missing or malformed.
  auto source = [&](const std::string& name, size_t rows, size_t cols) -> const WeightSource* {
    auto it = weights.find(name);
    if (it == weights.end()) {
      if (error->empty()) *error = "missing weight tensor " + name;
      return nullptr;
    }
    const WeightSource& src = it->second;
    const bool splits = !src.quant || cols % quant_block_elems(src.quant_type) == 0;
    const size_t want = src.quant ? weight_bytes(src.quant_type, rows, cols) : rows * cols * 4;
    if (!splits || src.bytes != want) {
      if (error->empty())
        *error = "weight tensor " + name + " (" + weight_type_name(src.quant ? src.quant_type : WEIGHT_F32) + ") has " +
                 std::to_string(src.bytes) + " bytes, expected " + std::to_string(want);
      return nullptr;
    }
    return &src;
  };
  auto type_of = [&](const WeightSource* src, size_t cols) { return src ? stored_type(wtype, *src, cols) : WEIGHT_F32; };
  // An f32 vector at `off` (reserved by the caller, so the q/k/v biases can sit back to back).
  auto place_vector_at = [&](const std::string& name, size_t n, size_t off) {
    const WeightSource* src = source(name, n, 1);
    if (src && src->quant) {
      if (error->empty()) *error = "weight tensor " + name + " must be f32";
    } else if (src) {
      copies.push_back({off, *src, n, 1, WEIGHT_F32});
    }
  };
  auto place_vector = [&](const std::string& name, size_t n) {
    const size_t off = reserve(n * 4);
    place_vector_at(name, n, off);
    return off;
  };
  // A matrix group computed as one matmul (rows stacked in order): offsets of its parts, stacked when they share a
  // storage type (one contiguous matrix), else each part on its own.
  struct Group {
    size_t offset[3];
    WeightType type[3];
    size_t rows[3];
    int n;
    bool stacked;
  };
  auto place_group = [&](std::initializer_list<std::pair<std::string, size_t>> parts, size_t cols) {
    Group g{};
    const WeightSource* srcs[3] = {};
    for (const auto& p : parts) {
      srcs[g.n] = source(p.first, p.second, cols);
      g.type[g.n] = type_of(srcs[g.n], cols);
      g.rows[g.n] = p.second;
      g.n++;
    }
    g.stacked = true;
    for (int i = 1; i < g.n; i++) g.stacked = g.stacked && g.type[i] == g.type[0];
    size_t all_rows = 0;
    for (int i = 0; i < g.n; i++) all_rows += g.rows[i];
    size_t base = g.stacked ? reserve(weight_bytes(g.type[0], all_rows, cols)) : 0, at = 0;
    for (int i = 0; i < g.n; i++) {
      g.offset[i] = g.stacked ? base + weight_bytes(g.type[0], at, cols) : reserve(weight_bytes(g.type[i], g.rows[i], cols));
      at += g.rows[i];
      if (srcs[i]) copies.push_back({g.offset[i], *srcs[i], g.rows[i], cols, g.type[i]});
    }
    return g;
  };
  auto parts_of = [](const Group& g, uint8_t* base) {
    MatParts p{};
    if (g.stacked) {
      int rows = 0;
      for (int i = 0; i < g.n; i++) rows += static_cast<int>(g.rows[i]);
      p.part[0] = {base + g.offset[0], g.type[0], rows};
      p.n = 1;
    } else {
      for (int i = 0; i < g.n; i++) p.part[i] = {base + g.offset[i], g.type[i], static_cast<int>(g.rows[i])};
      p.n = g.n;
    }
    return p;
  };

  struct LayerOffsets {
    size_t in_norm, bqkv, post_norm, q_norm, k_norm, attn_out_norm, mlp_out_norm;
    Group qkv, o, gu, down;
  };
  std::vector<LayerOffsets> lo(cfg.num_layers);
  const Group embed = place_group({{"model.embed_tokens.weight", V}}, C);
  for (int l = 0; l < cfg.num_layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerOffsets& o = lo[l];
    o.in_norm = place_vector(p + "input_layernorm.weight", C);
    o.qkv = place_group({{p + "self_attn.q_proj.weight", qd}, {p + "self_attn.k_proj.weight", kvd},
                         {p + "self_attn.v_proj.weight", kvd}}, C);
    if (cfg.attention_bias) {
      o.bqkv = reserve((qd + 2 * kvd) * 4);
      place_vector_at(p + "self_attn.q_proj.bias", qd, o.bqkv);
      place_vector_at(p + "self_attn.k_proj.bias", kvd, o.bqkv + qd * 4);
      place_vector_at(p + "self_attn.v_proj.bias", kvd, o.bqkv + (qd + kvd) * 4);
    }
    if (cfg.qk_norm) {
      o.q_norm = place_vector(p + "self_attn.q_norm.weight", cfg.head_dim);
      o.k_norm = place_vector(p + "self_attn.k_norm.weight", cfg.head_dim);
    }
    o.o = place_group({{p + "self_attn.o_proj.weight", C}}, qd);
    if (cfg.sandwich_norms) {
      // Gemma: post_attention_layernorm is on the attention output, pre_feedforward_layernorm is the MLP's input.
      o.attn_out_norm = place_vector(p + "post_attention_layernorm.weight", C);
      o.post_norm = place_vector(p + "pre_feedforward_layernorm.weight", C);
      o.mlp_out_norm = place_vector(p + "post_feedforward_layernorm.weight", C);
    } else {
      o.post_norm = place_vector(p + "post_attention_layernorm.weight", C);
    }
    o.gu = place_group({{p + "mlp.gate_proj.weight", I}, {p + "mlp.up_proj.weight", I}}, C);
    o.down = place_group({{p + "mlp.down_proj.weight", C}}, I);
  }
  const size_t norm_off = place_vector("model.norm.weight", C);
  Group head = embed;
  if (!cfg.tie_word_embeddings) head = place_group({{"lm_head.weight", V}}, C);
  if (!error->empty()) return nullptr;

  // Big tensors (an LM head is tens of millions of weights) are split into row ranges so the pool shares them.
  struct Job {
    const Copy* c;
    size_t r0, r1;
  };
  std::vector<Job> jobs;
  for (const Copy& c : copies) {
    const size_t step = c.cols >= (1u << 20) ? 1 : (1u << 20) / c.cols;
    for (size_t r = 0; r < c.rows; r += step) jobs.push_back({&c, r, r + step < c.rows ? r + step : c.rows});
  }
  m->storage.resize(total);
  uint8_t* base = m->storage.data();
  m->pool = std::make_unique<ThreadPool>(threads);
  m->pool->run(static_cast<int>(jobs.size()), [&](int i, int) {
    const Copy& c = *jobs[i].c;
    const size_t r0 = jobs[i].r0, n = (jobs[i].r1 - r0) * c.cols;
    uint8_t* dst = base + c.offset + weight_bytes(c.type, r0, c.cols);
    const float* f = c.src.f32 ? c.src.f32 + r0 * c.cols : nullptr;
    const uint8_t* q =
        c.src.quant ? static_cast<const uint8_t*>(c.src.quant) + weight_bytes(c.src.quant_type, r0, c.cols) : nullptr;
    if (q && c.type == c.src.quant_type) {
      std::memcpy(dst, q, weight_bytes(c.type, 1, n));
      return;
    }
    std::vector<float> widened;
    if (q) {
      widened.resize(n);
      quant_dequantize(c.src.quant_type, widened.data(), q, n);
      f = widened.data();
    }
    if (weight_is_quantized(c.type)) quant_quantize(c.type, dst, f, n);
    else if (c.type == WEIGHT_BF16) bf16_from_f32_array(reinterpret_cast<uint16_t*>(dst), f, n);
    else std::memcpy(dst, f, n * 4);
  });

  m->layers.resize(cfg.num_layers);
  m->matmul_weight_bytes = 0;
  m->matmul_macs_per_token = 0;
  auto bytes_of = [&](const MatParts& p, size_t cols) {
    for (int i = 0; i < p.n; i++) {
      m->matmul_weight_bytes += weight_bytes(p.part[i].type, p.part[i].rows, cols);
      m->matmul_macs_per_token += p.part[i].rows * cols;
    }
  };
  for (int l = 0; l < cfg.num_layers; l++) {
    const LayerOffsets& o = lo[l];
    LayerWeights& w = m->layers[l];
    w.input_norm = reinterpret_cast<const float*>(base + o.in_norm);
    w.qkv = parts_of(o.qkv, base);
    w.b_qkv = cfg.attention_bias ? reinterpret_cast<const float*>(base + o.bqkv) : nullptr;
    w.q_norm = cfg.qk_norm ? reinterpret_cast<const float*>(base + o.q_norm) : nullptr;
    w.k_norm = cfg.qk_norm ? reinterpret_cast<const float*>(base + o.k_norm) : nullptr;
    w.o = parts_of(o.o, base).part[0];
    w.post_norm = reinterpret_cast<const float*>(base + o.post_norm);
    w.attn_out_norm = cfg.sandwich_norms ? reinterpret_cast<const float*>(base + o.attn_out_norm) : nullptr;
    w.mlp_out_norm = cfg.sandwich_norms ? reinterpret_cast<const float*>(base + o.mlp_out_norm) : nullptr;
    w.gate_up = parts_of(o.gu, base);
    w.down = parts_of(o.down, base).part[0];
    bytes_of(w.qkv, C);
    bytes_of(parts_of(o.o, base), qd);
    bytes_of(w.gate_up, C);
    bytes_of(parts_of(o.down, base), I);
  }
  m->embed = base + embed.offset[0];
  m->embed_type = embed.type[0];
  m->final_norm = reinterpret_cast<const float*>(base + norm_off);
  m->lm_head = base + head.offset[0];
  m->head_type = head.type[0];
  bytes_of(parts_of(head, base), C);
  model_rope_freqs(cfg, &m->inv_freq, &m->inv_freq_long);
  model_rope_local_freqs(cfg, &m->inv_freq_local);
  return m;
}

void model_rope_local_freqs(const ModelConfig& cfg, std::vector<float>* inv_freq_local) {
  inv_freq_local->clear();
  if (cfg.rope_local_theta <= 0) return;
  inv_freq_local->resize(cfg.rotary_dim / 2);
  rope_inv_freq(inv_freq_local->data(), cfg.rotary_dim, cfg.rope_local_theta, nullptr);
}

void model_rope_freqs(const ModelConfig& cfg, std::vector<float>* inv_freq, std::vector<float>* inv_freq_long) {
  const int rot = cfg.rotary_dim, half = rot / 2;
  // As transformers: the exponents run over the rotated dims only, 1 / theta^(2j / rotary_dim).
  inv_freq->resize(half);
  rope_inv_freq(inv_freq->data(), rot, cfg.rope_theta, cfg.has_rope_scaling ? &cfg.rope_scaling : nullptr);
  // transformers' "linear" scaling: inv_freq / factor (positions / factor); the local set (model_rope_local_freqs) keeps its own.
  if (cfg.rope_linear_factor > 0 && cfg.rope_linear_factor != 1.0f)
    for (float& f : *inv_freq) f /= cfg.rope_linear_factor;
  inv_freq_long->clear();
  if (!cfg.has_longrope) return;
  inv_freq_long->resize(half);
  for (int j = 0; j < half; j++) {
    const double f = (*inv_freq)[j];
    (*inv_freq_long)[j] = static_cast<float>(f / cfg.longrope.long_factor[j]);
    (*inv_freq)[j] = static_cast<float>(f / cfg.longrope.short_factor[j]);
  }
}

void model_rope_tables(const ModelConfig& cfg, const std::vector<float>& inv_freq,
                       const std::vector<float>& inv_freq_long, const int32_t* positions, int T, float* cos_t,
                       float* sin_t) {
  const int rot = cfg.rotary_dim, half = rot / 2;
  if (!cfg.has_longrope) {
    rope_tables(cos_t, sin_t, positions, inv_freq.data(), T, rot);
    return;
  }
  const float scale = cfg.longrope.attention_factor;
  for (int t = 0; t < T; t++) {
    const bool long_set = positions[t] >= cfg.longrope.original_max_position_embeddings;
    float* c = cos_t + static_cast<size_t>(t) * half;
    float* s = sin_t + static_cast<size_t>(t) * half;
    rope_tables(c, s, positions + t, long_set ? inv_freq_long.data() : inv_freq.data(), 1, rot);
    for (int j = 0; j < half; j++) {
      c[j] *= scale;
      s[j] *= scale;
    }
  }
}

void model_rope_heads(float* x, int row_stride, const float* cos_t, const float* sin_t, int T, int num_heads,
                      int head_dim, int rotary_dim) {
  if (rotary_dim == head_dim) {
    rope_forward(x, row_stride, cos_t, sin_t, T, num_heads, head_dim);
    return;
  }
  // Partial RoPE: one head at a time, rotating pairs (j, j + rotary_dim/2); dims from rotary_dim on pass through.
  for (int h = 0; h < num_heads; h++)
    rope_forward(x + static_cast<size_t>(h) * head_dim, row_stride, cos_t, sin_t, T, 1, rotary_dim);
}

std::unique_ptr<KvCache> kv_cache_create(const ModelConfig& cfg, int num_blocks, int block_size, bool f16) {
  auto c = std::make_unique<KvCache>();
  c->num_layers = cfg.num_layers;
  c->num_blocks = num_blocks;
  c->block_size = block_size;
  c->num_kv_heads = cfg.num_kv_heads;
  c->head_dim = cfg.head_dim;
  c->f16 = f16;
  const size_t bytes = 2 * static_cast<size_t>(cfg.num_layers) * c->pool_floats() * c->elem_bytes();
  c->data.reset(static_cast<uint8_t*>(std::calloc(bytes, 1)));
  if (!c->data) throw std::bad_alloc();
  return c;
}

void kv_cache_copy_blocks(KvCache* cache, const int32_t* src, const int32_t* dst, int n) {
  const size_t block_bytes =
      static_cast<size_t>(cache->block_size) * cache->num_kv_heads * cache->head_dim * cache->elem_bytes();
  for (int l = 0; l < cache->num_layers; l++) {
    for (void* p : {cache->k(l), cache->v(l)}) {
      uint8_t* pool = static_cast<uint8_t*>(p);
      for (int i = 0; i < n; i++) std::memcpy(pool + dst[i] * block_bytes, pool + src[i] * block_bytes, block_bytes);
    }
  }
}

// y (T, out) = x @ [parts]^T + bias: one matmul for a stacked matrix; otherwise each part into scratch (T, rows),
// then copied into its columns of y.
static void matmul_parts(float* y, const float* x, const MatParts& p, const float* bias, int T, int in, int out,
                         std::vector<float>& scratch, ThreadPool* pool) {
  if (p.n == 1) {
    matmul_forward(y, x, p.part[0].w, p.part[0].type, bias, T, in, out, false, pool);
    return;
  }
  int col = 0;
  for (int i = 0; i < p.n; i++) {
    const int rows = p.part[i].rows;
    scratch.resize(static_cast<size_t>(T) * rows);
    matmul_forward(scratch.data(), x, p.part[i].w, p.part[i].type, bias ? bias + col : nullptr, T, in, rows, false, pool);
    for (int t = 0; t < T; t++)
      std::memcpy(y + static_cast<size_t>(t) * out + col, scratch.data() + static_cast<size_t>(t) * rows, sizeof(float) * rows);
    col += rows;
  }
}

// Sandwich norms (Gemma): x (T, C) += rmsnorm(y) with weight w; y is overwritten.
static void add_normed(float* x, float* y, const float* w, int T, int C, float eps, ThreadPool* pool) {
  rmsnorm_forward(y, y, w, T, C, eps, pool);
  const size_t n = static_cast<size_t>(T) * C;
  for (size_t i = 0; i < n; i++) x[i] += y[i];
}

// Below these many multiply-adds a step runs on one thread, and below the second on the caller's thread. Measured
// on a 2-vCPU VM with stories260K (0.26M per token): two threads made every batch from 4 tokens (1M) to 32 (8.4M)
// slower and cost twice the CPU (waking and syncing a worker costs more than a job of a few µs); the hop of the
// forward to a libuv thread and back cost 50-100 µs a step (B=1: 41 µs inline against 91-144 µs). A real model's
// decode step (SmolLM2-135M: about 0.1G per token) is far above both.
static const double kParallelStepMacs = 16e6;
static const double kInlineStepMacs = 2e6;

double model_step_macs(const Model* m, const StepBatchView& b) {
  const ModelConfig& cfg = m->cfg;
  double context = 0;  // keys each token attends to, summed
  for (int t = 0; t < b.T; t++) context += b.positions[t] + 1;
  const double attention = context * 2.0 * cfg.num_heads * cfg.head_dim * cfg.num_layers;  // q.k and p.v
  return static_cast<double>(b.T) * static_cast<double>(m->matmul_macs_per_token) + attention;
}

bool model_step_runs_inline(const Model* m, const StepBatchView& b) {
  if (m->step_mode != STEP_AUTO) return m->step_mode == STEP_INLINE;
  return model_step_macs(m, b) < kInlineStepMacs;
}

// The pool for this step, or nullptr: the step runs on the calling thread alone.
static ThreadPool* step_pool(Model* m, const StepBatchView& b) {
  if (m->step_mode != STEP_AUTO) return m->step_mode == STEP_WORKER ? m->pool.get() : nullptr;
  return model_step_macs(m, b) < kParallelStepMacs ? nullptr : m->pool.get();
}

void model_forward(Model* m, KvCache* cache, const StepBatchView& b, float* logits) {
  const ModelConfig& cfg = m->cfg;
  ThreadPool* pool = step_pool(m, b);
  // The step's jobs end with this call (also when one throws): the workers go to sleep after a short spin instead of
  // spinning 2 ms through the engine's sampling and streaming, which run on the same cores.
  struct RestAtEnd {
    ThreadPool* p;
    ~RestAtEnd() {
      if (p) p->rest();
    }
  } rest_at_end{pool};
  const int T = b.T, C = cfg.hidden_size, I = cfg.intermediate_size, D = cfg.head_dim;
  const int H = cfg.num_heads, KVH = cfg.num_kv_heads;
  const int qd = H * D, kvd = KVH * D, qkvd = qd + 2 * kvd;
  const int bs = cache->block_size;

  std::vector<float> x(static_cast<size_t>(T) * C);         // (T, C) residual stream
  std::vector<float> h(static_cast<size_t>(T) * C);         // (T, C) normed
  std::vector<float> qkv(static_cast<size_t>(T) * qkvd);    // (T, qd + 2 kvd)
  std::vector<float> att(static_cast<size_t>(T) * qd);      // (T, qd)
  std::vector<float> gu(static_cast<size_t>(T) * 2 * I);    // (T, 2I)
  std::vector<float> act(static_cast<size_t>(T) * I);       // (T, I)
  const int rot = cfg.rotary_dim;
  std::vector<float> cos_t(static_cast<size_t>(T) * rot / 2), sin_t(static_cast<size_t>(T) * rot / 2);
  std::vector<float> cos_local, sin_local;                  // sliding layers' own base (Gemma 3), when it has one
  std::vector<float> out_proj;                              // (T, C) sandwich norms: o_proj / down_proj output
  std::vector<int64_t> slots(T);
  std::vector<float> scratch;                               // parts of an unstacked q/k/v or gate/up matmul

  for (int t = 0; t < T; t++) {
    const int32_t* bt = b.block_tables + static_cast<size_t>(b.seq_index[t]) * b.max_blocks;
    const int p = b.positions[t];
    slots[t] = static_cast<int64_t>(bt[p / bs]) * bs + p % bs;
  }
  // Runs of consecutive tokens of one sequence: a run of >1 is a prefill chunk, single tokens are decodes.
  struct Run {
    int start, len;
  };
  std::vector<Run> prefills;
  std::vector<int32_t> dec_rows, dec_pos, dec_tables;
  for (int t = 0; t < T;) {
    int e = t + 1;
    while (e < T && b.seq_index[e] == b.seq_index[t]) e++;
    if (e - t > 1) {
      prefills.push_back({t, e - t});
    } else {
      dec_rows.push_back(t);
      dec_pos.push_back(b.positions[t]);
      const int32_t* bt = b.block_tables + static_cast<size_t>(b.seq_index[t]) * b.max_blocks;
      dec_tables.insert(dec_tables.end(), bt, bt + b.max_blocks);
    }
    t = e;
  }

  embedding_forward(x.data(), b.tokens, m->embed, m->embed_type, T, C);
  if (cfg.embed_scale > 0 && cfg.embed_scale != 1.0f)
    for (float& v : x) v *= cfg.embed_scale;
  model_rope_tables(cfg, m->inv_freq, m->inv_freq_long, b.positions, T, cos_t.data(), sin_t.data());
  if (!m->inv_freq_local.empty()) {
    cos_local.resize(cos_t.size());
    sin_local.resize(sin_t.size());
    rope_tables(cos_local.data(), sin_local.data(), b.positions, m->inv_freq_local.data(), T, rot);
  }
  if (cfg.sandwich_norms) out_proj.resize(static_cast<size_t>(T) * C);
  AttentionShape shape{H, KVH, D, bs, cache->f16};
  shape.scale = cfg.attn_scale;
  shape.softcap = cfg.attn_softcap;

  for (int l = 0; l < cfg.num_layers; l++) {
    const LayerWeights& w = m->layers[l];
    void* k_pool = cache->k(l);
    void* v_pool = cache->v(l);
    rmsnorm_forward(h.data(), x.data(), w.input_norm, T, C, cfg.rms_norm_eps, pool);
    matmul_parts(qkv.data(), h.data(), w.qkv, w.b_qkv, T, C, qkvd, scratch, pool);
    if (w.q_norm) {
      // Per-head RMSNorm of q and k (Qwen3): each token's H query heads and KVH key heads are rows of D.
      for (int t = 0; t < T; t++) {
        float* row = qkv.data() + static_cast<size_t>(t) * qkvd;
        rmsnorm_forward(row, row, w.q_norm, H, D, cfg.rms_norm_eps, nullptr);
        rmsnorm_forward(row + qd, row + qd, w.k_norm, KVH, D, cfg.rms_norm_eps, nullptr);
      }
    }
    if (model_layer_rotates(cfg, l)) {
      const bool local = model_layer_local_rope(cfg, l);
      const float* ct = local ? cos_local.data() : cos_t.data();
      const float* st = local ? sin_local.data() : sin_t.data();
      model_rope_heads(qkv.data(), qkvd, ct, st, T, H, D, rot);
      model_rope_heads(qkv.data() + qd, qkvd, ct, st, T, KVH, D, rot);
    }
    shape.window = model_layer_window(cfg, l);
    kv_cache_write(k_pool, v_pool, qkv.data() + qd, qkv.data() + qd + kvd, qkvd, slots.data(), T, kvd, cache->f16);
    for (const Run& r : prefills) {
      const int32_t* bt = b.block_tables + static_cast<size_t>(b.seq_index[r.start]) * b.max_blocks;
      attention_prefill_forward(att.data() + static_cast<size_t>(r.start) * qd,
                                qkv.data() + static_cast<size_t>(r.start) * qkvd, qkvd, k_pool, v_pool, bt,
                                b.positions[r.start], r.len, shape, pool);
    }
    if (!dec_rows.empty())
      attention_decode_forward(att.data(), qkv.data(), qkvd, dec_rows.data(), k_pool, v_pool, dec_pos.data(),
                               dec_tables.data(), b.max_blocks, static_cast<int>(dec_rows.size()), shape, pool);
    if (w.attn_out_norm) {
      matmul_forward(out_proj.data(), att.data(), w.o.w, w.o.type, nullptr, T, qd, C, false, pool);
      add_normed(x.data(), out_proj.data(), w.attn_out_norm, T, C, cfg.rms_norm_eps, pool);
    } else {
      matmul_forward(x.data(), att.data(), w.o.w, w.o.type, nullptr, T, qd, C, true, pool);
    }
    rmsnorm_forward(h.data(), x.data(), w.post_norm, T, C, cfg.rms_norm_eps, pool);
    matmul_parts(gu.data(), h.data(), w.gate_up, nullptr, T, C, 2 * I, scratch, pool);
    if (cfg.gelu_tanh) geglu_forward(act.data(), gu.data(), gu.data() + I, T, I, 2 * I, pool);
    else swiglu_forward(act.data(), gu.data(), gu.data() + I, T, I, 2 * I, pool);
    if (w.mlp_out_norm) {
      matmul_forward(out_proj.data(), act.data(), w.down.w, w.down.type, nullptr, T, I, C, false, pool);
      add_normed(x.data(), out_proj.data(), w.mlp_out_norm, T, C, cfg.rms_norm_eps, pool);
    } else {
      matmul_forward(x.data(), act.data(), w.down.w, w.down.type, nullptr, T, I, C, true, pool);
    }
  }

  std::vector<float> last(static_cast<size_t>(b.L) * C);  // (L, C)
  for (int i = 0; i < b.L; i++)
    std::memcpy(last.data() + static_cast<size_t>(i) * C, x.data() + static_cast<size_t>(b.logit_rows[i]) * C,
                sizeof(float) * C);
  rmsnorm_forward(last.data(), last.data(), m->final_norm, b.L, C, cfg.rms_norm_eps, pool);
  matmul_forward(logits, last.data(), m->lm_head, m->head_type, nullptr, b.L, C, cfg.vocab_size, false, pool);
  if (cfg.final_softcap > 0) softcap_forward(logits, static_cast<size_t>(b.L) * cfg.vocab_size, cfg.final_softcap);
}
