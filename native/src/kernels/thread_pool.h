// A persistent pool of native worker threads with a parallel-for; the calling thread joins in as worker 0.
// Workers spin briefly after each job (engine steps issue hundreds of small jobs back to back) and then
// sleep on a condition variable; after rest() they sleep within 200 µs (the end of an engine step: what follows
// is the caller's own work, and a spinning worker would take a core from it and from the processes beside it).
// One job at a time per pool: concurrent callers are serialised.
// The caller waits for the job's tasks, not for every worker: a descheduled worker (an oversubscribed box)
// simply claims nothing, and one that wakes up late cannot claim a task of a later job (claims carry the job's
// generation).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

class ThreadPool {
 public:
  // num_threads <= 0: hardware cores. spin_us: how long an idle worker spins before it sleeps (covers the gaps
  // between the jobs of one engine step).
  explicit ThreadPool(int num_threads, int spin_us = 2000);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }
  void resize(int num_threads);

  // fn(task, thread) for every task in [0, num_tasks); tasks are claimed dynamically, thread < num_threads().
  void run(int num_tasks, const std::function<void(int task, int thread)>& fn);

  // fn(begin, end) over [0, n) split into at most 4 x num_threads() contiguous ranges (tasks claimed as above, so a
  // slow or descheduled thread holds back one range, not a thread's share), each a multiple of align (except the
  // last).
  void parallel_for(int64_t n, int64_t align, const std::function<void(int64_t begin, int64_t end)>& fn);

  // Idle workers sleep after a short spin instead of spinning out their budget; the next run() wakes them. Call it
  // where a burst of jobs ends (after a forward), not between the jobs of one burst.
  void rest();

  // Workers asleep on the condition variable now (tests).
  int sleeping_workers() const { return sleeping_.load(); }

  static int hardware_threads();

 private:
  void start(int num_threads);
  void stop();
  void worker_loop(int thread);
  void work(uint32_t gen, int thread);

  int num_threads_ = 1;
  std::chrono::microseconds spin_budget_;
  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // held for a whole run(): one job at a time

  std::mutex wake_mutex_;
  std::condition_variable wake_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleeping_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> rest_since_ns_{-1};  // steady-clock time of rest(), -1 once run() publishes a job

  // The current job, published before generation_ is bumped. claim_ = (generation << 32) | next task index.
  std::atomic<const std::function<void(int, int)>*> job_{nullptr};
  std::atomic<int> job_tasks_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> tasks_done_{0};
};
