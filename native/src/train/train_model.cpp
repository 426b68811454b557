// The trainable Llama decoder (train_model.h): parameter bookkeeping, the training forward that keeps its
// activations, the whole-model backward and the optimizer step. Each op is a kernel from train_ops.h or
// kernels.h; this file only sequences them and owns the buffers (trainable tensors in params/grads/adam_m/adam_v,
// frozen base tensors under LoRA in `frozen`; a forward-only model has no gradients or moments and one reused set
// of layer activations).
#include "train_model.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace {

float* P(TrainModel* m, TrainRef r) { return (r.frozen ? m->frozen.data() : m->params.data()) + r.offset; }
float* P_or_null(TrainModel* m, TrainRef r) { return r.present() ? P(m, r) : nullptr; }
// A frozen tensor has no gradient: the backward kernels skip a null one.
float* G(TrainModel* m, TrainRef r) {
  return r.present() && !r.frozen && !m->forward_only ? m->grads.data() + r.offset : nullptr;
}

// Every entry point that writes gradients or moments calls this first: a forward-only model has none, and with its
// adapters off a LoRA model is only the base (the reference), which trains nothing.
void require_trainable(const TrainModel* m, const char* what) {
  if (m->forward_only) throw std::runtime_error(std::string(what) + ": the model is frozen (forward only)");
  if (m->lora_off) throw std::runtime_error(std::string(what) + ": the LoRA adapters are off (the frozen base; turn them on to train)");
}

// (in, out) of the projection LoRA target t adapts.
void lora_target_dims(const ModelConfig& c, LoraTarget t, int* in, int* out) {
  const int C = c.hidden_size, I = c.intermediate_size;
  const int qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  const int ins[LORA_TARGETS] = {C, C, C, qd, C, C, I}, outs[LORA_TARGETS] = {qd, kvd, kvd, C, I, I, C};
  *in = ins[t];
  *out = outs[t];
}

// Adds layer L's adapter on `t` (when it has one) to the projection output y (N, out) of x (N, in).
void lora_add(TrainModel* m, const TrainLayer& L, TrainActivations::Layer& S, LoraTarget t, float* y, const float* x,
              int N, int in, int out) {
  if (!L.lora_a[t].present() || m->lora_off) return;
  S.lora_xa[t].resize(static_cast<size_t>(N) * m->lora_rank);
  lora_forward(y, S.lora_xa[t].data(), x, P(m, L.lora_a[t]), P(m, L.lora_b[t]), m->lora_scale, N, in, out,
               m->lora_rank, m->pool.get());
}

// Backward of lora_add: dx (N, in) += the adapter's input gradient, adapter gradients +=.
void lora_add_backward(TrainModel* m, const TrainLayer& L, const TrainActivations::Layer& S, LoraTarget t, float* dx,
                       const float* dy, const float* x, int N, int in, int out) {
  if (!L.lora_a[t].present()) return;
  lora_backward(dx, G(m, L.lora_a[t]), G(m, L.lora_b[t]), dy, x, S.lora_xa[t].data(), P(m, L.lora_a[t]),
                P(m, L.lora_b[t]), m->lora_scale, N, in, out, m->lora_rank, m->pool.get());
}

// Backward of model_rope_heads: rope_backward over the first rotary_dim dims of each head (all of them, one call,
// when rotary_dim == head_dim).
void rope_heads_backward(float* dx, int row_stride, const float* cos_t, const float* sin_t, int N, int num_heads,
                         int head_dim, int rotary_dim) {
  if (rotary_dim == head_dim) {
    rope_backward(dx, row_stride, cos_t, sin_t, N, num_heads, head_dim);
    return;
  }
  for (int h = 0; h < num_heads; h++)
    rope_backward(dx + static_cast<size_t>(h) * head_dim, row_stride, cos_t, sin_t, N, 1, rotary_dim);
}

bool embed_scaled(const ModelConfig& c) { return c.embed_scale > 0 && c.embed_scale != 1.0f; }

TrainAttentionShape attention_shape(const ModelConfig& c, const TrainBatchView& bt, int l) {
  TrainAttentionShape as{bt.B, bt.T, c.num_heads, c.num_kv_heads, c.head_dim};
  as.scale = c.attn_scale;
  as.softcap = c.attn_softcap;
  as.window = model_layer_window(c, l);
  return as;
}

// Sandwich norms (Gemma): x (N, C) += rmsnorm(y) with weight w, keeping rstd (N) for the backward; y is kept.
void add_normed(TrainModel* m, float* x, const float* y, TrainRef w, std::vector<float>* rstd, int N, int C) {
  std::vector<float> yn(static_cast<size_t>(N) * C);
  rstd->resize(N);
  rmsnorm_train_forward(yn.data(), rstd->data(), y, P(m, w), N, C, m->cfg.rms_norm_eps, m->pool.get());
  for (size_t i = 0; i < yn.size(); i++) x[i] += yn[i];
}

// The LM head's logits of rows (M, C) into (M, V), soft-capped when the model caps them (Gemma 2).
void lm_logits(TrainModel* m, float* logits, const float* hsel, int M) {
  const int C = m->cfg.hidden_size, V = m->cfg.vocab_size;
  matmul_forward(logits, hsel, P(m, m->lm_head), WEIGHT_F32, nullptr, M, C, V, false, m->pool.get());
  if (m->cfg.final_softcap > 0) softcap_forward(logits, static_cast<size_t>(M) * V, m->cfg.final_softcap);
}

// Through lm_logits' soft-cap: dz (n) *= 1 - (c / cap)^2, c the capped logits.
void softcap_backward(float* dz, const float* capped, size_t n, float cap) {
  for (size_t i = 0; i < n; i++) {
    const float r = capped[i] / cap;
    dz[i] *= 1.0f - r * r;
  }
}

// Computes the residual stream to the final norm for `batch`, keeping every activation (one layer's, reused, on a
// forward-only model).
void forward_to_final_norm(TrainModel* m, const TrainBatchView& bt) {
  const ModelConfig& c = m->cfg;
  const int N = bt.B * bt.T, C = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const int H = c.num_heads, KVH = c.num_kv_heads, qd = H * D, kvd = KVH * D;
  ThreadPool* pool = m->pool.get();
  TrainActivations& A = m->act;
  A.B = bt.B;
  A.T = bt.T;
  m->pass_id++;
  const size_t n = N;
  const int rot = c.rotary_dim;
  A.cos_t.resize(n * rot / 2);
  A.sin_t.resize(n * rot / 2);
  model_rope_tables(c, m->inv_freq, m->inv_freq_long, bt.positions, N, A.cos_t.data(), A.sin_t.data());
  if (!m->inv_freq_local.empty()) {
    A.cos_local.resize(n * rot / 2);
    A.sin_local.resize(n * rot / 2);
    rope_tables(A.cos_local.data(), A.sin_local.data(), bt.positions, m->inv_freq_local.data(), N, rot);
  }
  A.layers.resize(m->forward_only ? 1 : c.num_layers);
  std::vector<float> h(n * C);
  embedding_forward(h.data(), bt.tokens, P(m, m->embed), WEIGHT_F32, N, C);
  if (embed_scaled(c))
    for (float& v : h) v *= c.embed_scale;
  for (int l = 0; l < c.num_layers; l++) {
    const TrainLayer& L = m->layers[l];
    TrainActivations::Layer& S = A.layers[m->forward_only ? 0 : l];
    if (!m->forward_only) S.h_in = h;  // read by the backward only
    S.xn1.resize(n * C);
    S.rstd1.resize(n);
    rmsnorm_train_forward(S.xn1.data(), S.rstd1.data(), h.data(), P(m, L.input_norm), N, C, c.rms_norm_eps, pool);
    S.q.resize(n * qd);
    S.k.resize(n * kvd);
    S.v.resize(n * kvd);
    matmul_forward(S.q.data(), S.xn1.data(), P(m, L.wq), WEIGHT_F32, P_or_null(m, L.bq), N, C, qd, false, pool);
    matmul_forward(S.k.data(), S.xn1.data(), P(m, L.wk), WEIGHT_F32, P_or_null(m, L.bk), N, C, kvd, false, pool);
    matmul_forward(S.v.data(), S.xn1.data(), P(m, L.wv), WEIGHT_F32, P_or_null(m, L.bv), N, C, kvd, false, pool);
    lora_add(m, L, S, LORA_Q, S.q.data(), S.xn1.data(), N, C, qd);
    lora_add(m, L, S, LORA_K, S.k.data(), S.xn1.data(), N, C, kvd);
    lora_add(m, L, S, LORA_V, S.v.data(), S.xn1.data(), N, C, kvd);
    if (L.q_norm.present()) {
      // Qwen3: RMSNorm of every head (rows of D) before RoPE; the pre-norm q/k are kept for the backward.
      S.q_pre = S.q;
      S.k_pre = S.k;
      S.rstd_q.resize(n * H);
      S.rstd_k.resize(n * KVH);
      rmsnorm_train_forward(S.q.data(), S.rstd_q.data(), S.q_pre.data(), P(m, L.q_norm), N * H, D, c.rms_norm_eps, pool);
      rmsnorm_train_forward(S.k.data(), S.rstd_k.data(), S.k_pre.data(), P(m, L.k_norm), N * KVH, D, c.rms_norm_eps,
                            pool);
    }
    if (model_layer_rotates(c, l)) {
      const bool local = model_layer_local_rope(c, l);
      const float* ct = local ? A.cos_local.data() : A.cos_t.data();
      const float* st = local ? A.sin_local.data() : A.sin_t.data();
      model_rope_heads(S.q.data(), qd, ct, st, N, H, D, rot);
      model_rope_heads(S.k.data(), kvd, ct, st, N, KVH, D, rot);
    }
    S.probs.resize(static_cast<size_t>(bt.B) * H * bt.T * bt.T);
    S.o.resize(n * qd);
    const TrainAttentionShape as = attention_shape(c, bt, l);
    attention_train_forward(S.o.data(), S.probs.data(), S.q.data(), S.k.data(), S.v.data(), bt.mask, as, pool);
    S.h_mid = h;
    if (L.attn_out_norm.present()) {
      // Gemma: the o_proj output is normed before it joins the residual stream.
      S.y_attn.assign(n * C, 0.0f);
      matmul_forward(S.y_attn.data(), S.o.data(), P(m, L.wo), WEIGHT_F32, nullptr, N, qd, C, false, pool);
      lora_add(m, L, S, LORA_O, S.y_attn.data(), S.o.data(), N, qd, C);
      add_normed(m, S.h_mid.data(), S.y_attn.data(), L.attn_out_norm, &S.rstd_ao, N, C);
    } else {
      matmul_forward(S.h_mid.data(), S.o.data(), P(m, L.wo), WEIGHT_F32, nullptr, N, qd, C, true, pool);
      lora_add(m, L, S, LORA_O, S.h_mid.data(), S.o.data(), N, qd, C);
    }
    S.xn2.resize(n * C);
    S.rstd2.resize(n);
    rmsnorm_train_forward(S.xn2.data(), S.rstd2.data(), S.h_mid.data(), P(m, L.post_norm), N, C, c.rms_norm_eps,
                          pool);
    S.g.resize(n * I);
    S.u.resize(n * I);
    S.a.resize(n * I);
    matmul_forward(S.g.data(), S.xn2.data(), P(m, L.wg), WEIGHT_F32, nullptr, N, C, I, false, pool);
    matmul_forward(S.u.data(), S.xn2.data(), P(m, L.wu), WEIGHT_F32, nullptr, N, C, I, false, pool);
    lora_add(m, L, S, LORA_GATE, S.g.data(), S.xn2.data(), N, C, I);
    lora_add(m, L, S, LORA_UP, S.u.data(), S.xn2.data(), N, C, I);
    if (c.gelu_tanh) geglu_train_forward(S.a.data(), S.g.data(), S.u.data(), N, I, pool);
    else swiglu_train_forward(S.a.data(), S.g.data(), S.u.data(), N, I, pool);
    h = S.h_mid;
    if (L.mlp_out_norm.present()) {
      S.y_mlp.assign(n * C, 0.0f);
      matmul_forward(S.y_mlp.data(), S.a.data(), P(m, L.wd), WEIGHT_F32, nullptr, N, I, C, false, pool);
      lora_add(m, L, S, LORA_DOWN, S.y_mlp.data(), S.a.data(), N, I, C);
      add_normed(m, h.data(), S.y_mlp.data(), L.mlp_out_norm, &S.rstd_mo, N, C);
    } else {
      matmul_forward(h.data(), S.a.data(), P(m, L.wd), WEIGHT_F32, nullptr, N, I, C, true, pool);
      lora_add(m, L, S, LORA_DOWN, h.data(), S.a.data(), N, I, C);
    }
  }
  if (!m->forward_only) A.h_final = h;
  A.xf.resize(n * C);
  A.rstdf.resize(n);
  rmsnorm_train_forward(A.xf.data(), A.rstdf.data(), h.data(), P(m, m->final_norm), N, C, c.rms_norm_eps, pool);
}

// The gradient of a projection output y (N, C) that joins the residual as rmsnorm(y) (sandwich norms), given the
// residual's dh: into dy (overwritten), the norm weight's gradient accumulated; without the norm, dh itself.
const float* through_out_norm(TrainModel* m, TrainRef norm, const std::vector<float>& y, const std::vector<float>& rstd,
                              const std::vector<float>& dh, std::vector<float>& dy, int N, int C) {
  if (!norm.present()) return dh.data();
  dy.assign(static_cast<size_t>(N) * C, 0.0f);
  rmsnorm_backward(dy.data(), G(m, norm), dh.data(), y.data(), P(m, norm), rstd.data(), N, C, m->pool.get());
  return dy.data();
}

// Backward from dxf = d loss / d final-normed hidden (N, C) to every parameter gradient.
void backward_from_final_norm(TrainModel* m, const TrainBatchView& bt, const std::vector<float>& dxf) {
  const ModelConfig& c = m->cfg;
  const int N = bt.B * bt.T, C = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const int H = c.num_heads, KVH = c.num_kv_heads, qd = H * D, kvd = KVH * D;
  ThreadPool* pool = m->pool.get();
  TrainActivations& A = m->act;
  const size_t n = N;
  std::vector<float> dh(n * C, 0.0f);
  rmsnorm_backward(dh.data(), G(m, m->final_norm), dxf.data(), A.h_final.data(), P(m, m->final_norm),
                   A.rstdf.data(), N, C, pool);
  std::vector<float> da(n * I), dg(n * I), du(n * I), dxn(n * C), dout(n * qd), dq(n * qd), dk(n * kvd),
      dv(n * kvd), dy;  // dy (N, C): gradient of a sandwich-normed projection output
  for (int l = c.num_layers - 1; l >= 0; l--) {
    const TrainLayer& L = m->layers[l];
    TrainActivations::Layer& S = A.layers[l];
    // The MLP output's gradient: the residual's, or through post_feedforward_layernorm (Gemma).
    const float* dmlp = through_out_norm(m, L.mlp_out_norm, S.y_mlp, S.rstd_mo, dh, dy, N, C);
    matmul_backward(da.data(), G(m, L.wd), nullptr, dmlp, S.a.data(), P(m, L.wd), N, I, C, false, pool);
    lora_add_backward(m, L, S, LORA_DOWN, da.data(), dmlp, S.a.data(), N, I, C);
    if (c.gelu_tanh) geglu_backward(dg.data(), du.data(), da.data(), S.g.data(), S.u.data(), N, I, pool);
    else swiglu_backward(dg.data(), du.data(), da.data(), S.g.data(), S.u.data(), N, I, pool);
    matmul_backward(dxn.data(), G(m, L.wg), nullptr, dg.data(), S.xn2.data(), P(m, L.wg), N, C, I, false, pool);
    lora_add_backward(m, L, S, LORA_GATE, dxn.data(), dg.data(), S.xn2.data(), N, C, I);
    matmul_backward(dxn.data(), G(m, L.wu), nullptr, du.data(), S.xn2.data(), P(m, L.wu), N, C, I, true, pool);
    lora_add_backward(m, L, S, LORA_UP, dxn.data(), du.data(), S.xn2.data(), N, C, I);
    rmsnorm_backward(dh.data(), G(m, L.post_norm), dxn.data(), S.h_mid.data(), P(m, L.post_norm), S.rstd2.data(), N,
                     C, pool);
    const float* dattn = through_out_norm(m, L.attn_out_norm, S.y_attn, S.rstd_ao, dh, dy, N, C);
    matmul_backward(dout.data(), G(m, L.wo), nullptr, dattn, S.o.data(), P(m, L.wo), N, qd, C, false, pool);
    lora_add_backward(m, L, S, LORA_O, dout.data(), dattn, S.o.data(), N, qd, C);
    const TrainAttentionShape as = attention_shape(c, bt, l);
    attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), S.probs.data(), S.q.data(), S.k.data(),
                       S.v.data(), as, pool);
    if (model_layer_rotates(c, l)) {
      const bool local = model_layer_local_rope(c, l);
      const float* ct = local ? A.cos_local.data() : A.cos_t.data();
      const float* st = local ? A.sin_local.data() : A.sin_t.data();
      rope_heads_backward(dq.data(), qd, ct, st, N, H, D, c.rotary_dim);
      rope_heads_backward(dk.data(), kvd, ct, st, N, KVH, D, c.rotary_dim);
    }
    if (L.q_norm.present()) {
      // Through the per-head norms: rmsnorm_backward accumulates, so into zeroed buffers, then swapped in.
      std::vector<float> dq_pre(n * qd, 0.0f), dk_pre(n * kvd, 0.0f);
      rmsnorm_backward(dq_pre.data(), G(m, L.q_norm), dq.data(), S.q_pre.data(), P(m, L.q_norm), S.rstd_q.data(), N * H,
                       D, pool);
      rmsnorm_backward(dk_pre.data(), G(m, L.k_norm), dk.data(), S.k_pre.data(), P(m, L.k_norm), S.rstd_k.data(),
                       N * KVH, D, pool);
      dq.swap(dq_pre);
      dk.swap(dk_pre);
    }
    matmul_backward(dxn.data(), G(m, L.wq), G(m, L.bq), dq.data(), S.xn1.data(), P(m, L.wq), N, C, qd, false, pool);
    lora_add_backward(m, L, S, LORA_Q, dxn.data(), dq.data(), S.xn1.data(), N, C, qd);
    matmul_backward(dxn.data(), G(m, L.wk), G(m, L.bk), dk.data(), S.xn1.data(), P(m, L.wk), N, C, kvd, true, pool);
    lora_add_backward(m, L, S, LORA_K, dxn.data(), dk.data(), S.xn1.data(), N, C, kvd);
    matmul_backward(dxn.data(), G(m, L.wv), G(m, L.bv), dv.data(), S.xn1.data(), P(m, L.wv), N, C, kvd, true, pool);
    lora_add_backward(m, L, S, LORA_V, dxn.data(), dv.data(), S.xn1.data(), N, C, kvd);
    // Below layer 0's input norm only the embedding reads dh: nothing to do when both are frozen (LoRA).
    if (l == 0 && G(m, L.input_norm) == nullptr && G(m, m->embed) == nullptr) break;
    rmsnorm_backward(dh.data(), G(m, L.input_norm), dxn.data(), S.h_in.data(), P(m, L.input_norm), S.rstd1.data(),
                     N, C, pool);
  }
  if (G(m, m->embed) != nullptr) {
    if (embed_scaled(c))
      for (float& v : dh) v *= c.embed_scale;
    embedding_backward(G(m, m->embed), dh.data(), bt.tokens, N, C);
  }
}

// Rows of logits gathered per chunk by the policy step: bounds its scratch to kPolicyChunk x vocab floats.
constexpr int kPolicyChunk = 256;

}  // namespace

const char* const kLoraTargetNames[LORA_TARGETS] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                     "gate_proj", "up_proj", "down_proj"};

std::string train_lora_name(int layer, LoraTarget target, char which) {
  const char* block = target <= LORA_O ? "self_attn." : "mlp.";
  return "base_model.model.model.layers." + std::to_string(layer) + "." + block + kLoraTargetNames[target] +
         ".lora_" + which + ".weight";
}

std::unique_ptr<TrainModel> train_model_create(const ModelConfig& cfg,
                                               const std::unordered_map<std::string, const float*>& weights,
                                               int num_labels, const TrainLoraConfig* lora, bool forward_only,
                                               int threads, std::string* error) {
  auto m = std::make_unique<TrainModel>();
  m->cfg = cfg;
  m->num_labels = num_labels;
  m->forward_only = forward_only;
  if (lora != nullptr) {
    m->lora_rank = lora->rank;
    m->lora_scale = static_cast<float>(static_cast<double>(lora->alpha) / lora->rank);
  }
  const int C = cfg.hidden_size, I = cfg.intermediate_size, V = cfg.vocab_size;
  const int qd = cfg.num_heads * cfg.head_dim, kvd = cfg.num_kv_heads * cfg.head_dim;
  const bool base_frozen = lora != nullptr;  // LoRA trains adapters (and a score head) only
  auto add = [&](const std::string& name, int rows, int cols, bool decay, bool frozen) {
    size_t& count = frozen ? m->num_frozen : m->num_params;
    TrainRef r{count, frozen};
    m->index[name] = m->tensors.size();
    m->tensors.push_back({name, rows, cols, r, decay});
    count += static_cast<size_t>(rows) * cols;
    return r;
  };
  auto base = [&](const std::string& name, int rows, int cols, bool decay) {
    return add(name, rows, cols, decay, base_frozen);
  };
  m->embed = base("model.embed_tokens.weight", V, C, true);
  for (int l = 0; l < cfg.num_layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    TrainLayer L;
    L.input_norm = base(p + "input_layernorm.weight", C, 1, false);
    L.wq = base(p + "self_attn.q_proj.weight", qd, C, true);
    L.wk = base(p + "self_attn.k_proj.weight", kvd, C, true);
    L.wv = base(p + "self_attn.v_proj.weight", kvd, C, true);
    if (cfg.attention_bias) {
      L.bq = base(p + "self_attn.q_proj.bias", qd, 1, false);
      L.bk = base(p + "self_attn.k_proj.bias", kvd, 1, false);
      L.bv = base(p + "self_attn.v_proj.bias", kvd, 1, false);
    }
    if (cfg.qk_norm) {
      L.q_norm = base(p + "self_attn.q_norm.weight", cfg.head_dim, 1, false);
      L.k_norm = base(p + "self_attn.k_norm.weight", cfg.head_dim, 1, false);
    }
    L.wo = base(p + "self_attn.o_proj.weight", C, qd, true);
    if (cfg.sandwich_norms) {
      L.attn_out_norm = base(p + "post_attention_layernorm.weight", C, 1, false);
      L.post_norm = base(p + "pre_feedforward_layernorm.weight", C, 1, false);
    } else {
      L.post_norm = base(p + "post_attention_layernorm.weight", C, 1, false);
    }
    L.wg = base(p + "mlp.gate_proj.weight", I, C, true);
    L.wu = base(p + "mlp.up_proj.weight", I, C, true);
    L.wd = base(p + "mlp.down_proj.weight", C, I, true);
    if (cfg.sandwich_norms) L.mlp_out_norm = base(p + "post_feedforward_layernorm.weight", C, 1, false);
    for (int t = 0; lora != nullptr && t < LORA_TARGETS; t++) {
      if (!lora->targets[t]) continue;
      const LoraTarget target = static_cast<LoraTarget>(t);
      int in, out;
      lora_target_dims(cfg, target, &in, &out);
      L.lora_a[t] = add(train_lora_name(l, target, 'A'), lora->rank, in, true, false);
      L.lora_b[t] = add(train_lora_name(l, target, 'B'), out, lora->rank, true, false);
    }
    m->layers.push_back(L);
  }
  m->final_norm = base("model.norm.weight", C, 1, false);
  m->has_lm_head = !cfg.tie_word_embeddings && weights.count("lm_head.weight") > 0;
  if (cfg.tie_word_embeddings)
    m->lm_head = m->embed;
  else if (m->has_lm_head)
    m->lm_head = base("lm_head.weight", V, C, true);
  if (num_labels > 0) m->score = add("score.weight", num_labels, C, true, false);

  m->params.resize(m->num_params);
  if (!forward_only) {
    m->grads.assign(m->num_params, 0.0f);
    m->adam_m.assign(m->num_params, 0.0f);
    m->adam_v.assign(m->num_params, 0.0f);
  }
  m->frozen.resize(m->num_frozen);
  for (const TrainParam& t : m->tensors) {
    auto it = weights.find(t.name);
    if (it == weights.end()) {
      *error = "missing weight tensor " + t.name;
      return nullptr;
    }
    std::memcpy(P(m.get(), t.ref), it->second, sizeof(float) * t.rows * t.cols);
  }
  model_rope_freqs(cfg, &m->inv_freq, &m->inv_freq_long);
  model_rope_local_freqs(cfg, &m->inv_freq_local);
  m->pool = std::make_unique<ThreadPool>(threads);
  return m;
}

TrainMemory train_memory(const TrainModel* m) {
  auto bytes = [](const std::vector<float>& v) { return v.capacity() * sizeof(float); };
  const TrainActivations& A = m->act;
  size_t act = bytes(A.cos_t) + bytes(A.sin_t) + bytes(A.h_final) + bytes(A.xf) + bytes(A.rstdf);
  for (const TrainActivations::Layer& S : A.layers) {
    for (const std::vector<float>* v : {&S.h_in, &S.xn1, &S.rstd1, &S.q, &S.k, &S.v, &S.probs, &S.o, &S.h_mid, &S.xn2,
                                        &S.rstd2, &S.g, &S.u, &S.a, &S.q_pre, &S.k_pre, &S.rstd_q, &S.rstd_k})
      act += bytes(*v);
    for (const std::vector<float>& v : S.lora_xa) act += bytes(v);
  }
  return {bytes(m->params), bytes(m->frozen), bytes(m->grads), bytes(m->adam_m) + bytes(m->adam_v), act};
}

void train_merged_weights(TrainModel* m, float* out) {
  std::memcpy(out, m->frozen.data(), sizeof(float) * m->num_frozen);
  for (const TrainLayer& L : m->layers) {
    const TrainRef w[LORA_TARGETS] = {L.wq, L.wk, L.wv, L.wo, L.wg, L.wu, L.wd};
    for (int t = 0; t < LORA_TARGETS; t++) {
      if (!L.lora_a[t].present() || !w[t].frozen) continue;
      int in, o;
      lora_target_dims(m->cfg, static_cast<LoraTarget>(t), &in, &o);
      lora_merge(out + w[t].offset, P(m, L.lora_a[t]), P(m, L.lora_b[t]), m->lora_scale, in, o, m->lora_rank,
                 m->pool.get());
    }
  }
}

double train_lm_step(TrainModel* m, const TrainBatchView& bt, const int32_t* targets, const float* weights,
                     float grad_scale, double* weight_sum) {
  const int N = bt.B * bt.T, C = m->cfg.hidden_size, V = m->cfg.vocab_size;
  double wsum = 0;
  std::vector<int> rows;
  for (int i = 0; i < N; i++) {
    if (weights[i] != 0.0f) {
      rows.push_back(i);
      wsum += weights[i];
    }
  }
  *weight_sum = wsum;
  if (grad_scale != 0.0f) require_trainable(m, "LM step with a gradient");
  if (rows.empty() || wsum == 0) return 0.0;
  forward_to_final_norm(m, bt);
  const int M = static_cast<int>(rows.size());
  ThreadPool* pool = m->pool.get();
  std::vector<float> hsel(static_cast<size_t>(M) * C), logits(static_cast<size_t>(M) * V), wsel(M), dhsel(hsel.size());
  std::vector<int32_t> tsel(M);
  for (int r = 0; r < M; r++) {
    std::memcpy(hsel.data() + static_cast<size_t>(r) * C, m->act.xf.data() + static_cast<size_t>(rows[r]) * C,
                sizeof(float) * C);
    tsel[r] = targets[rows[r]];
    wsel[r] = static_cast<float>(weights[rows[r]] / wsum);
  }
  lm_logits(m, logits.data(), hsel.data(), M);
  std::vector<float> capped;
  if (m->cfg.final_softcap > 0 && grad_scale != 0.0f) capped = logits;
  const double loss = cross_entropy_forward_backward(logits.data(), tsel.data(), wsel.data(), grad_scale, M, V, pool);
  if (grad_scale == 0.0f) return loss;  // evaluation: no gradient to add
  if (!capped.empty()) softcap_backward(logits.data(), capped.data(), logits.size(), m->cfg.final_softcap);
  matmul_backward(dhsel.data(), G(m, m->lm_head), nullptr, logits.data(), hsel.data(), P(m, m->lm_head), M, C, V,
                  false, pool);
  std::vector<float> dxf(static_cast<size_t>(N) * C, 0.0f);
  for (int r = 0; r < M; r++)
    std::memcpy(dxf.data() + static_cast<size_t>(rows[r]) * C, dhsel.data() + static_cast<size_t>(r) * C,
                sizeof(float) * C);
  backward_from_final_norm(m, bt, dxf);
  return loss;
}

void train_score_step(TrainModel* m, const TrainBatchView& bt, const float* dscores, float* scores) {
  const int N = bt.B * bt.T, C = m->cfg.hidden_size, L = m->num_labels;
  if (dscores != nullptr) require_trainable(m, "score step with a gradient");
  forward_to_final_norm(m, bt);
  ThreadPool* pool = m->pool.get();
  std::vector<int> last(bt.B, -1);
  for (int b = 0; b < bt.B; b++)
    for (int t = 0; t < bt.T; t++)
      if (bt.mask[b * bt.T + t] != 0) last[b] = b * bt.T + t;
  std::vector<float> hs(static_cast<size_t>(bt.B) * C, 0.0f), dhs(hs.size());
  for (int b = 0; b < bt.B; b++)
    if (last[b] >= 0)
      std::memcpy(hs.data() + static_cast<size_t>(b) * C, m->act.xf.data() + static_cast<size_t>(last[b]) * C,
                  sizeof(float) * C);
  matmul_forward(scores, hs.data(), P(m, m->score), WEIGHT_F32, nullptr, bt.B, C, L, false, pool);
  for (int b = 0; b < bt.B; b++)
    if (last[b] < 0)
      for (int j = 0; j < L; j++) scores[b * L + j] = 0.0f;
  if (dscores == nullptr) return;
  std::vector<float> ds(dscores, dscores + static_cast<size_t>(bt.B) * L);
  for (int b = 0; b < bt.B; b++)
    if (last[b] < 0)
      for (int j = 0; j < L; j++) ds[b * L + j] = 0.0f;
  matmul_backward(dhs.data(), G(m, m->score), nullptr, ds.data(), hs.data(), P(m, m->score), bt.B, C, L, false, pool);
  std::vector<float> dxf(static_cast<size_t>(N) * C, 0.0f);
  for (int b = 0; b < bt.B; b++)
    if (last[b] >= 0)
      std::memcpy(dxf.data() + static_cast<size_t>(last[b]) * C, dhs.data() + static_cast<size_t>(b) * C,
                  sizeof(float) * C);
  backward_from_final_norm(m, bt, dxf);
}

double train_optimizer_step(TrainModel* m, const AdamWConfig& c, double* lr_out) {
  require_trainable(m, "optimizer step");
  ThreadPool* pool = m->pool.get();
  const double norm = std::sqrt(grad_sq_sum(m->grads.data(), m->num_params, pool));
  double mul = 1.0;
  if (c.max_grad_norm > 0) {
    const double coef = c.max_grad_norm / (norm + 1e-6);  // as torch.nn.utils.clip_grad_norm_
    if (coef < 1.0) mul = coef;
  }
  const double lr = lr_at_step(c, m->step);
  m->step++;
  for (const TrainParam& t : m->tensors) {
    if (t.ref.frozen) continue;
    const size_t off = t.ref.offset, n = static_cast<size_t>(t.rows) * t.cols;
    adamw_update(m->params.data() + off, m->adam_m.data() + off, m->adam_v.data() + off, m->grads.data() + off, n, lr,
                 mul, c, t.decay, m->step, pool);
  }
  *lr_out = lr;
  return norm;
}

void train_zero_grad(TrainModel* m) { std::fill(m->grads.begin(), m->grads.end(), 0.0f); }

void train_policy_forward(TrainModel* m, const TrainBatchView& bt, const int32_t* targets, const int32_t* sel,
                          float* logp, float* entropy, float* values) {
  const int N = bt.B * bt.T, C = m->cfg.hidden_size, V = m->cfg.vocab_size;
  forward_to_final_norm(m, bt);
  TrainModel::PolicyPass& pass = m->pass;
  pass.B = bt.B;
  pass.T = bt.T;
  pass.tokens.assign(bt.tokens, bt.tokens + N);
  pass.positions.assign(bt.positions, bt.positions + N);
  pass.mask.assign(bt.mask, bt.mask + N);
  pass.targets.assign(targets, targets + N);
  pass.rows.clear();
  for (int i = 0; i < N; i++)
    if (sel[i] != 0) pass.rows.push_back(i);
  pass.values = values != nullptr && m->num_labels == 1;
  m->policy_pass = m->pass_id;
  ThreadPool* pool = m->pool.get();
  if (logp != nullptr) std::fill(logp, logp + N, 0.0f);
  if (entropy != nullptr) std::fill(entropy, entropy + N, 0.0f);
  const bool lm = m->lm_head.present() && (logp != nullptr || entropy != nullptr);
  const int M = static_cast<int>(pass.rows.size());
  std::vector<float> hsel, logits;
  for (int r0 = 0; lm && r0 < M; r0 += kPolicyChunk) {
    const int rc = std::min(kPolicyChunk, M - r0);
    hsel.resize(static_cast<size_t>(rc) * C);
    logits.resize(static_cast<size_t>(rc) * V);
    for (int r = 0; r < rc; r++)
      std::memcpy(hsel.data() + static_cast<size_t>(r) * C, m->act.xf.data() + static_cast<size_t>(pass.rows[r0 + r]) * C,
                  sizeof(float) * C);
    lm_logits(m, logits.data(), hsel.data(), rc);
    pool->parallel_for(rc, 1, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; r++) {
        const float* z = logits.data() + r * V;
        float mx = z[0];
        for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
        double sum = 0, zsum = 0;  // sum e^(z-mx), sum e^(z-mx) * z
        for (int i = 0; i < V; i++) {
          const double p = std::exp(static_cast<double>(z[i]) - mx);
          sum += p;
          zsum += p * z[i];
        }
        const double lse = mx + std::log(sum);
        const int slot = pass.rows[r0 + r];
        if (logp != nullptr) logp[slot] = static_cast<float>(z[pass.targets[slot]] - lse);
        if (entropy != nullptr) entropy[slot] = static_cast<float>(lse - zsum / sum);  // -sum p log p
      }
    });
  }
  if (pass.values)
    matmul_forward(values, m->act.xf.data(), P(m, m->score), WEIGHT_F32, nullptr, N, C, 1, false, pool);
  else if (values != nullptr)
    std::fill(values, values + N, 0.0f);
}

void train_policy_backward(TrainModel* m, const float* dlogp, const float* dvalues) {
  require_trainable(m, "policy backward");
  if (m->policy_pass < 0 || m->policy_pass != m->pass_id)
    throw std::runtime_error("policy backward: the activations of that forward are gone (another step ran since)");
  const TrainModel::PolicyPass& pass = m->pass;
  const TrainBatchView bt{pass.B, pass.T, pass.tokens.data(), pass.positions.data(), pass.mask.data()};
  const int N = pass.B * pass.T, C = m->cfg.hidden_size, V = m->cfg.vocab_size;
  ThreadPool* pool = m->pool.get();
  std::vector<float> dxf(static_cast<size_t>(N) * C, 0.0f);
  if (dlogp != nullptr && m->lm_head.present()) {
    std::vector<int> rows;
    for (int slot : pass.rows)
      if (dlogp[slot] != 0.0f) rows.push_back(slot);
    const int M = static_cast<int>(rows.size());
    std::vector<float> hsel, dz, dh;
    for (int r0 = 0; r0 < M; r0 += kPolicyChunk) {
      const int rc = std::min(kPolicyChunk, M - r0);
      hsel.resize(static_cast<size_t>(rc) * C);
      dh.resize(hsel.size());
      dz.resize(static_cast<size_t>(rc) * V);
      for (int r = 0; r < rc; r++)
        std::memcpy(hsel.data() + static_cast<size_t>(r) * C, m->act.xf.data() + static_cast<size_t>(rows[r0 + r]) * C,
                    sizeof(float) * C);
      lm_logits(m, dz.data(), hsel.data(), rc);
      // d logp_t / d z = onehot(t) - softmax(z), scaled by dlogp (then through the soft-cap, when there is one).
      const float cap = m->cfg.final_softcap;
      pool->parallel_for(rc, 1, [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; r++) {
          float* z = dz.data() + r * V;
          const int slot = rows[r0 + r];
          float mx = z[0];
          for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
          double sum = 0;
          for (int i = 0; i < V; i++) sum += std::exp(static_cast<double>(z[i]) - mx);
          const double lse = mx + std::log(sum), g = dlogp[slot];
          const int target = pass.targets[slot];
          for (int i = 0; i < V; i++) {
            const double d = -g * std::exp(static_cast<double>(z[i]) - lse) + (i == target ? g : 0.0);
            const double zc = cap > 0 ? z[i] / cap : 0.0;
            z[i] = static_cast<float>(d * (1.0 - zc * zc));
          }
        }
      });
      matmul_backward(dh.data(), G(m, m->lm_head), nullptr, dz.data(), hsel.data(), P(m, m->lm_head), rc, C, V, false,
                      pool);
      for (int r = 0; r < rc; r++) {
        float* d = dxf.data() + static_cast<size_t>(rows[r0 + r]) * C;
        const float* s = dh.data() + static_cast<size_t>(r) * C;
        for (int c = 0; c < C; c++) d[c] += s[c];
      }
    }
  }
  if (dvalues != nullptr && pass.values) {
    std::vector<float> dv(dvalues, dvalues + N);
    matmul_backward(dxf.data(), G(m, m->score), nullptr, dv.data(), m->act.xf.data(), P(m, m->score), N, C, 1, true,
                    pool);
  }
  backward_from_final_norm(m, bt, dxf);
  m->policy_pass = -1;  // activations are consumed: a second backward would double-count
}
