// The persistent worker pool behind every parallel kernel (see thread_pool.h). Not a general task scheduler:
// one flat job at a time, joined before run() returns.
#include "thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#else
static inline void cpu_relax() {}
#endif

// After rest(), how long idle workers still spin: the caller's work between two bursts is often shorter (a decode
// step's sampling), and a sleeping worker's wake-up costs tens to hundreds of µs on a VM (an idle vCPU has to be
// woken by the host); longer gaps (streaming, other processes' turns) no longer pay 2 ms of spinning.
static const std::chrono::nanoseconds kRestSpin = std::chrono::microseconds(200);

void ThreadPool::rest() {
  rest_since_ns_.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_release);
}

int ThreadPool::hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

ThreadPool::ThreadPool(int num_threads, int spin_us) : spin_budget_(spin_us) { start(num_threads); }

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::resize(int num_threads) {
  std::lock_guard<std::mutex> lock(run_mutex_);
  stop();
  start(num_threads);
}

void ThreadPool::start(int num_threads) {
  num_threads_ = num_threads <= 0 ? hardware_threads() : num_threads;
  stopping_.store(false);
  for (int i = 1; i < num_threads_; i++) workers_.emplace_back([this, i] { worker_loop(i); });
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    stopping_.store(true);
    generation_.fetch_add(1);
  }
  wake_cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::work(uint32_t gen, int thread) {
  const std::function<void(int, int)>* fn = job_.load(std::memory_order_acquire);
  const int n = job_tasks_.load(std::memory_order_acquire);
  uint64_t c = claim_.load(std::memory_order_acquire);
  for (;;) {
    // A claim succeeds only while the job of `gen` is current, so fn and n above belong to it.
    if (static_cast<uint32_t>(c >> 32) != gen || static_cast<int>(c & 0xffffffffu) >= n) return;
    if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
    (*fn)(static_cast<int>(c & 0xffffffffu), thread);
    tasks_done_.fetch_add(1, std::memory_order_acq_rel);
    c = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::worker_loop(int thread) {
  uint64_t seen = 0;
  for (;;) {
    auto spin_start = std::chrono::steady_clock::now();
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      cpu_relax();
      if (++spins % 256 != 0) continue;
      const auto now = std::chrono::steady_clock::now();
      const int64_t rest_since = rest_since_ns_.load(std::memory_order_acquire);
      if (now - spin_start > spin_budget_ ||
          (rest_since >= 0 && now.time_since_epoch().count() - rest_since > kRestSpin.count())) {
        std::unique_lock<std::mutex> lock(wake_mutex_);
        sleeping_.fetch_add(1);
        wake_cv_.wait(lock, [&] { return generation_.load() != seen; });
        sleeping_.fetch_sub(1);
        break;
      }
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_.load()) return;
    work(static_cast<uint32_t>(seen), thread);
  }
}

void ThreadPool::run(int num_tasks, const std::function<void(int, int)>& fn) {
  if (num_tasks <= 0) return;
  std::lock_guard<std::mutex> lock(run_mutex_);
  if (num_threads_ == 1 || num_tasks == 1) {
    for (int t = 0; t < num_tasks; t++) fn(t, 0);
    return;
  }
  rest_since_ns_.store(-1, std::memory_order_relaxed);  // ordered before the job by the seq_cst bump below
  const uint32_t gen = static_cast<uint32_t>(generation_.load() + 1);
  job_.store(&fn, std::memory_order_release);
  job_tasks_.store(num_tasks, std::memory_order_release);
  tasks_done_.store(0, std::memory_order_release);
  claim_.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
  generation_.fetch_add(1);  // seq_cst: pairs with the sleeping_ increment in worker_loop
  if (sleeping_.load() > 0) {
    std::lock_guard<std::mutex> wake_lock(wake_mutex_);
    wake_cv_.notify_all();
  }
  work(gen, 0);
  int spins = 0;
  while (tasks_done_.load(std::memory_order_acquire) < num_tasks) {
    cpu_relax();
    if (++spins > 4096) std::this_thread::yield();
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t align, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  if (align < 1) align = 1;
  const int64_t units = (n + align - 1) / align;
  // A few tasks per thread: balances ranges when a thread is slow or descheduled.
  const int64_t max_parts = num_threads_ == 1 ? 1 : 4 * static_cast<int64_t>(num_threads_);
  const int parts = static_cast<int>(units < max_parts ? units : max_parts);
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  run(parts, [&](int part, int) {
    int64_t b = units * part / parts * align;
    int64_t e = units * (part + 1) / parts * align;
    if (e > n) e = n;
    if (b < e) fn(b, e);
  });
}
