// A small persistent thread pool: parallel_for over [0, n) with dynamic chunks, the calling
// thread taking part. One pool per CPU context; calls on one pool must not overlap.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace gdn {

class ThreadPool {
 public:
  explicit ThreadPool(int32_t threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int32_t size() const { return int32_t(workers_.size()) + 1; }
  // fn(begin, end, thread_id) over chunks of at most `grain` items; thread_id < size().
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int32_t)>& fn);

 private:
  void worker(int32_t id);
  void drain(int32_t id);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;
  bool stop_ = false;
  int32_t busy_ = 0;
  const std::function<void(int64_t, int64_t, int32_t)>* fn_ = nullptr;
  int64_t n_ = 0, grain_ = 1;
  std::atomic<int64_t> next_{0};
};

}  // namespace gdn
