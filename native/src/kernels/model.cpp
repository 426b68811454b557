// model_forward: one Llama step over a paged KV cache (see model.h); model_create packs HF tensors into the
// native layout (q/k/v stacked, gate/up stacked; f32, bf16 or Q8_0 per matrix). Each op is a kernel from kernels.h; this file
// only sequences them and owns the activation buffers.
#include "model.h"

#include <cstring>

namespace {

size_t align_up(size_t n) { return (n + 63) / 64 * 64; }

}  // namespace

std::unique_ptr<Model> model_create(const ModelConfig& cfg, WeightType wtype,
                                    const std::unordered_map<std::string, WeightSource>& weights, int threads,
                                    std::string* error) {
  auto m = std::make_unique<Model>();
  m->cfg = cfg;
  m->wtype = wtype;
  const size_t C = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  const size_t qd = static_cast<size_t>(cfg.num_heads) * cfg.head_dim;
  const size_t kvd = static_cast<size_t>(cfg.num_kv_heads) * cfg.head_dim;
  auto matrix_type = [&](size_t cols) { return wtype == WEIGHT_Q8_0 && cols % Q8_0_BLOCK != 0 ? WEIGHT_F32 : wtype; };

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
  // Tensor `name` (rows, cols) goes to `offset` in type `type`; offsets of stacked matrices come from weight_bytes.
  auto place = [&](const std::string& name, size_t rows, size_t cols, WeightType type, size_t offset) {
    auto it = weights.find(name);
    if (it == weights.end()) {
      if (error->empty()) *error = "missing weight tensor " + name;
      return;
    }
    const WeightSource& src = it->second;
    const size_t want = src.q8_0 ? weight_bytes(WEIGHT_Q8_0, rows, cols) : rows * cols * 4;
    if ((src.q8_0 && cols % Q8_0_BLOCK != 0) || src.bytes != want) {
      if (error->empty())
        *error = "weight tensor " + name + " has " + std::to_string(src.bytes) + " bytes, expected " + std::to_string(want);
      return;
    }
    copies.push_back({offset, src, rows, cols, type});
  };

  struct LayerOffsets {
    size_t in_norm, qkv, bqkv, o, post_norm, gu, down;
  };
  std::vector<LayerOffsets> lo(cfg.num_layers);
  const WeightType t_c = matrix_type(C), t_qd = matrix_type(qd), t_i = matrix_type(I);
  const size_t embed_off = reserve(weight_bytes(t_c, V, C));
  place("model.embed_tokens.weight", V, C, t_c, embed_off);
  for (int l = 0; l < cfg.num_layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    LayerOffsets& o = lo[l];
    o.in_norm = reserve(C * 4);
    place(p + "input_layernorm.weight", C, 1, WEIGHT_F32, o.in_norm);
    o.qkv = reserve(weight_bytes(t_c, qd + 2 * kvd, C));
    place(p + "self_attn.q_proj.weight", qd, C, t_c, o.qkv);
    place(p + "self_attn.k_proj.weight", kvd, C, t_c, o.qkv + weight_bytes(t_c, qd, C));
    place(p + "self_attn.v_proj.weight", kvd, C, t_c, o.qkv + weight_bytes(t_c, qd + kvd, C));
    if (cfg.attention_bias) {
      o.bqkv = reserve((qd + 2 * kvd) * 4);
      place(p + "self_attn.q_proj.bias", qd, 1, WEIGHT_F32, o.bqkv);
      place(p + "self_attn.k_proj.bias", kvd, 1, WEIGHT_F32, o.bqkv + qd * 4);
      place(p + "self_attn.v_proj.bias", kvd, 1, WEIGHT_F32, o.bqkv + (qd + kvd) * 4);
    }
    o.o = reserve(weight_bytes(t_qd, C, qd));
    place(p + "self_attn.o_proj.weight", C, qd, t_qd, o.o);
    o.post_norm = reserve(C * 4);
    place(p + "post_attention_layernorm.weight", C, 1, WEIGHT_F32, o.post_norm);
    o.gu = reserve(weight_bytes(t_c, 2 * I, C));
    place(p + "mlp.gate_proj.weight", I, C, t_c, o.gu);
    place(p + "mlp.up_proj.weight", I, C, t_c, o.gu + weight_bytes(t_c, I, C));
    o.down = reserve(weight_bytes(t_i, C, I));
    place(p + "mlp.down_proj.weight", C, I, t_i, o.down);
  }
  const size_t norm_off = reserve(C * 4);
  place("model.norm.weight", C, 1, WEIGHT_F32, norm_off);
  size_t head_off = embed_off;
  if (!cfg.tie_word_embeddings) {
    head_off = reserve(weight_bytes(t_c, V, C));
    place("lm_head.weight", V, C, t_c, head_off);
  }
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
    const BlockQ8_0* q = c.src.q8_0 ? c.src.q8_0 + r0 * (c.cols / Q8_0_BLOCK) : nullptr;
    std::vector<float> widened;
    if (q && c.type != WEIGHT_Q8_0) {
      widened.resize(n);
      q8_0_dequantize(widened.data(), q, n);
      f = widened.data();
    }
    if (c.type == WEIGHT_Q8_0) {
      if (q) std::memcpy(dst, q, weight_bytes(WEIGHT_Q8_0, 1, n));
      else q8_0_quantize(reinterpret_cast<BlockQ8_0*>(dst), f, n);
    } else if (c.type == WEIGHT_BF16) {
      bf16_from_f32_array(reinterpret_cast<uint16_t*>(dst), f, n);
    } else {
      std::memcpy(dst, f, n * 4);
    }
  });

  m->layers.resize(cfg.num_layers);
  for (int l = 0; l < cfg.num_layers; l++) {
    const LayerOffsets& o = lo[l];
    LayerWeights& w = m->layers[l];
    w.input_norm = reinterpret_cast<const float*>(base + o.in_norm);
    w.w_qkv = base + o.qkv;
    w.t_qkv = t_c;
    w.b_qkv = cfg.attention_bias ? reinterpret_cast<const float*>(base + o.bqkv) : nullptr;
    w.w_o = base + o.o;
    w.t_o = t_qd;
    w.post_norm = reinterpret_cast<const float*>(base + o.post_norm);
    w.w_gate_up = base + o.gu;
    w.t_gate_up = t_c;
    w.w_down = base + o.down;
    w.t_down = t_i;
  }
  m->embed = base + embed_off;
  m->embed_type = t_c;
  m->final_norm = reinterpret_cast<const float*>(base + norm_off);
  m->lm_head = base + head_off;
  m->head_type = t_c;
  m->inv_freq.resize(cfg.head_dim / 2);
  rope_inv_freq(m->inv_freq.data(), cfg.head_dim, cfg.rope_theta, cfg.has_rope_scaling ? &cfg.rope_scaling : nullptr);
  m->matmul_weight_bytes = cfg.num_layers * (weight_bytes(t_c, qd + 2 * kvd, C) + weight_bytes(t_qd, C, qd) +
                                             weight_bytes(t_c, 2 * I, C) + weight_bytes(t_i, C, I)) +
                           weight_bytes(t_c, V, C);
  return m;
}

std::unique_ptr<KvCache> kv_cache_create(const ModelConfig& cfg, int num_blocks, int block_size) {
  auto c = std::make_unique<KvCache>();
  c->num_layers = cfg.num_layers;
  c->num_blocks = num_blocks;
  c->block_size = block_size;
  c->num_kv_heads = cfg.num_kv_heads;
  c->head_dim = cfg.head_dim;
  c->data.assign(2 * static_cast<size_t>(cfg.num_layers) * c->pool_floats(), 0.0f);
  return c;
}

void kv_cache_copy_blocks(KvCache* cache, const int32_t* src, const int32_t* dst, int n) {
  const size_t block_floats = static_cast<size_t>(cache->block_size) * cache->num_kv_heads * cache->head_dim;
  for (int l = 0; l < cache->num_layers; l++) {
    for (float* pool : {cache->k(l), cache->v(l)}) {
      for (int i = 0; i < n; i++)
        std::memcpy(pool + dst[i] * block_floats, pool + src[i] * block_floats, block_floats * sizeof(float));
    }
  }
}

void model_forward(Model* m, KvCache* cache, const StepBatchView& b, float* logits) {
  const ModelConfig& cfg = m->cfg;
  ThreadPool* pool = m->pool.get();
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
  std::vector<float> cos_t(static_cast<size_t>(T) * D / 2), sin_t(static_cast<size_t>(T) * D / 2);
  std::vector<int64_t> slots(T);

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
  rope_tables(cos_t.data(), sin_t.data(), b.positions, m->inv_freq.data(), T, D);
  const AttentionShape shape{H, KVH, D, bs};

  for (int l = 0; l < cfg.num_layers; l++) {
    const LayerWeights& w = m->layers[l];
    float* k_pool = cache->k(l);
    float* v_pool = cache->v(l);
    rmsnorm_forward(h.data(), x.data(), w.input_norm, T, C, cfg.rms_norm_eps, pool);
    matmul_forward(qkv.data(), h.data(), w.w_qkv, w.t_qkv, w.b_qkv, T, C, qkvd, false, pool);
    rope_forward(qkv.data(), qkvd, cos_t.data(), sin_t.data(), T, H, D);
    rope_forward(qkv.data() + qd, qkvd, cos_t.data(), sin_t.data(), T, KVH, D);
    kv_cache_write(k_pool, v_pool, qkv.data() + qd, qkv.data() + qd + kvd, qkvd, slots.data(), T, kvd);
    for (const Run& r : prefills) {
      const int32_t* bt = b.block_tables + static_cast<size_t>(b.seq_index[r.start]) * b.max_blocks;
      attention_prefill_forward(att.data() + static_cast<size_t>(r.start) * qd,
                                qkv.data() + static_cast<size_t>(r.start) * qkvd, qkvd, k_pool, v_pool, bt,
                                b.positions[r.start], r.len, shape, pool);
    }
    if (!dec_rows.empty())
      attention_decode_forward(att.data(), qkv.data(), qkvd, dec_rows.data(), k_pool, v_pool, dec_pos.data(),
                               dec_tables.data(), b.max_blocks, static_cast<int>(dec_rows.size()), shape, pool);
    matmul_forward(x.data(), att.data(), w.w_o, w.t_o, nullptr, T, qd, C, true, pool);
    rmsnorm_forward(h.data(), x.data(), w.post_norm, T, C, cfg.rms_norm_eps, pool);
    matmul_forward(gu.data(), h.data(), w.w_gate_up, w.t_gate_up, nullptr, T, C, 2 * I, false, pool);
    swiglu_forward(act.data(), gu.data(), gu.data() + I, T, I, 2 * I, pool);
    matmul_forward(x.data(), act.data(), w.w_down, w.t_down, nullptr, T, I, C, true, pool);
  }

  std::vector<float> last(static_cast<size_t>(b.L) * C);  // (L, C)
  for (int i = 0; i < b.L; i++)
    std::memcpy(last.data() + static_cast<size_t>(i) * C, x.data() + static_cast<size_t>(b.logit_rows[i]) * C,
                sizeof(float) * C);
  rmsnorm_forward(last.data(), last.data(), m->final_norm, b.L, C, cfg.rms_norm_eps, pool);
  matmul_forward(logits, last.data(), m->lm_head, m->head_type, nullptr, b.L, C, cfg.vocab_size, false, pool);
}
