// sampling_select: the sampler's candidate ids of one logits row, in (value desc, id asc) order: the k best (top-k,
// top_logprobs) and a prefix that holds top-p's nucleus. What libs/model sampler.ts sorts the draw's candidates
// with; the weights come from softmax_weights. Not the draw itself, nor the masking (allowed ids, penalties).
// NaN ranks as -inf (tie broken by id), so the order is total whatever the row holds.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels.h"

namespace {

// Candidates at most this many are sorted whole; more are binned by value first, into kNucleusBins bins (a 49k
// vocabulary puts a few dozen ids in each).
constexpr size_t kSortDirect = 512;
constexpr int kNucleusBins = 2048;

inline float rank_of(float v) { return v == v ? v : -INFINITY; }

// a before b in (value desc, id asc).
struct Before {
  const float* x;
  bool operator()(int32_t a, int32_t b) const {
    const float va = rank_of(x[a]), vb = rank_of(x[b]);
    return va > vb || (va == vb && a < b);
  }
};

}  // namespace

size_t top_k_ids(int32_t* out,      // (min(k, n)) out: the k best ids, best first
                 const float* x,    // (n)
                 size_t n, size_t k) {
  k = std::min(k, n);
  if (k == 0) return 0;
  const Before before{x};
  // Min-heap of the k best so far under Before; its root is the worst of them. std::*_heap keep the largest on top,
  // so the heap's comparator is Before itself.
  for (size_t i = 0; i < k; i++) out[i] = static_cast<int32_t>(i);
  std::make_heap(out, out + k, before);
  // Ids come in ascending order: a later id enters only with a strictly larger value than the root's.
  float worst = rank_of(x[out[0]]);
  for (size_t i = k; i < n; i++) {
    if (!(rank_of(x[i]) > worst)) continue;
    std::pop_heap(out, out + k, before);
    out[k - 1] = static_cast<int32_t>(i);
    std::push_heap(out, out + k, before);
    worst = rank_of(x[out[0]]);
  }
  std::sort(out, out + k, before);
  return k;
}

size_t nucleus_ids(int32_t* out,        // (n) out: a prefix of every id in (value desc, id asc) order
                   const float* x,      // (n)
                   const double* w,     // (n) softmax weights of x (softmax_weights), 0 for -inf
                   size_t n, double max,
                   double total,        // sum of w (softmax_weights' return)
                   double p) {          // top-p: the nucleus holds p * total
  const double target = p * total;
  const Before before{x};
  // Only ids of weight >= (total - target) / n can be in the nucleus: all lighter ones together weigh at most
  // total - target. They are a prefix of the order (the weight grows with the value), and usually a few hundred of a
  // 49k vocabulary, so the binning below reads those alone.
  const double floor_w = (total - target) / static_cast<double>(n);
  size_t s = 0;
  for (size_t i = 0; i < n; i++)
    if (w[i] > 0 && w[i] >= floor_w) out[s++] = static_cast<int32_t>(i);
  size_t kept = s;
  if (s > kSortDirect) {
    float lo = static_cast<float>(max);
    for (size_t j = 0; j < s; j++) lo = std::min(lo, x[out[j]]);
    const double scale = lo < max ? kNucleusBins / (max - lo) : 0;
    thread_local std::vector<uint16_t> bin_of;
    thread_local std::vector<int32_t> ordered;
    bin_of.resize(s);
    double mass[kNucleusBins] = {};
    size_t count[kNucleusBins + 1] = {};
    for (size_t j = 0; j < s; j++) {
      // (max - v) * scale >= 0, so truncation is floor (std::floor is a call without SSE4.1).
      const int b = std::min(kNucleusBins - 1, static_cast<int>((max - x[out[j]]) * scale));
      bin_of[j] = static_cast<uint16_t>(b);
      mass[b] += w[out[j]];
      count[b + 1]++;
    }
    // The bins whose mass, summed from the top, reaches the target, and one more for rounding between that sum and
    // the in-order one.
    int cut = 0;
    double cum = 0;
    while (cut < kNucleusBins - 1 && cum + mass[cut] < target) cum += mass[cut++];
    cut = std::min(kNucleusBins - 1, cut + 1);
    // Counting sort by bin (ids ascending inside each), then each bin by value.
    for (int b = 1; b <= cut + 1; b++) count[b] += count[b - 1];
    kept = count[cut + 1];
    ordered.resize(kept);
    size_t next[kNucleusBins];
    std::copy(count, count + cut + 1, next);
    for (size_t j = 0; j < s; j++)
      if (bin_of[j] <= cut) ordered[next[bin_of[j]]++] = out[j];
    for (int b = 0; b <= cut; b++)
      if (count[b + 1] - count[b] > 1) std::sort(ordered.data() + count[b], ordered.data() + count[b + 1], before);
    std::copy(ordered.begin(), ordered.end(), out);
  } else {
    std::sort(out, out + s, before);
  }
  double sum = 0;
  for (size_t i = 0; i < kept; i++) sum += w[out[i]];
  if (sum >= target) return kept;
  // The in-order sum fell short of the target (rounding at p near 1): every id, sorted.
  for (size_t i = 0; i < n; i++) out[i] = static_cast<int32_t>(i);
  std::sort(out, out + n, before);
  return n;
}
