// A persistent pool of native worker threads with a parallel-for; the calling thread joins in as worker 0.
// Workers spin briefly after each job (engine steps issue hundreds of small jobs back to back) and then
// sleep on a condition variable. One job at a time per pool: concurrent callers are serialised.
// The caller waits for the job's tasks, not for every worker: a descheduled worker (an oversubscribed box)
// simply claims nothing, and one that wakes up late cannot claim a task of a later job (claims carry the job's
// generation).
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);  // <= 0: hardware cores
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }
  void resize(int num_threads);

  // fn(task, thread) for every task in [0, num_tasks); tasks are claimed dynamically, thread < num_threads().
  void run(int num_tasks, const std::function<void(int task, int thread)>& fn);

  // fn(begin, end) over [0, n) split into at most num_threads() contiguous ranges, each a multiple of align
  // (except the last).
  void parallel_for(int64_t n, int64_t align, const std::function<void(int64_t begin, int64_t end)>& fn);

  static int hardware_threads();

 private:
  void start(int num_threads);
  void stop();
  void worker_loop(int thread);
  void work(uint32_t gen, int thread);

  int num_threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // held for a whole run(): one job at a time

  std::mutex wake_mutex_;
  std::condition_variable wake_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleeping_{0};
  std::atomic<bool> stopping_{false};

  // The current job, published before generation_ is bumped. claim_ = (generation << 32) | next task index.
  std::atomic<const std::function<void(int, int)>*> job_{nullptr};
  std::atomic<int> job_tasks_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> tasks_done_{0};
};
