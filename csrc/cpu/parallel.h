// CPU work splitting: a fixed set of work items handed to N threads through an atomic
// counter. Which thread runs an item never changes what the item computes, so results
// that are reduced per item in item order are deterministic whatever the thread count.
//
// Failure handling (a logging library must not take the process down):
//  * a thread that cannot be started (std::system_error, or bad_alloc for its state)
//    is not an error: the threads already running and the calling thread take the
//    remaining items from the counter, so the work completes with fewer threads;
//  * an exception thrown by an item on a worker thread would call std::terminate if it
//    left the thread: it is caught there, the remaining items are skipped, and the first
//    exception is rethrown on the calling thread after the join (tbf_run then turns it
//    into a Status).
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace tbfast {

// Scratch that grows with (threads x problem size), e.g. a private histogram per thread,
// stays under this many bytes in total: kernels run fewer threads rather than more memory.
constexpr double kScratchBudgetBytes = 256.0 * (1 << 20);

// Threads (at most num_threads, at least 1) whose private scratch of bytes_per_thread
// each fits kScratchBudgetBytes. One thread is always allowed: its scratch is needed
// whatever the thread count, and if even that cannot be allocated the kernel's
// std::bad_alloc becomes kOutOfMemory.
inline int threads_for_scratch(int num_threads, double bytes_per_thread) {
  if (num_threads < 1) num_threads = 1;
  if (bytes_per_thread <= 0) return num_threads;
  double fit = kScratchBudgetBytes / bytes_per_thread;
  if (fit < 1.0) return 1;
  return fit < (double)num_threads ? (int)fit : num_threads;
}

template <typename F>
void parallel_items(int64_t num_items, int num_threads, F&& fn) {
  if (num_threads > num_items) num_threads = (int)num_items;
  if (num_threads <= 1) {
    for (int64_t i = 0; i < num_items; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  std::exception_ptr error;
  std::mutex error_lock;
  auto worker = [&](int tid) noexcept {
    try {
      for (int64_t i = next.fetch_add(1); i < num_items; i = next.fetch_add(1)) fn(i, tid);
    } catch (...) {
      std::lock_guard<std::mutex> g(error_lock);
      if (!error) error = std::current_exception();
      next.store(num_items);  // the others stop taking items
    }
  };
  std::vector<std::thread> pool;
  try {
    pool.reserve(num_threads - 1);
    for (int t = 1; t < num_threads; ++t) pool.emplace_back(worker, t);
  } catch (...) {
    // No more threads (EAGAIN under a thread or address-space limit): run with those
    // that started; the calling thread takes whatever they leave.
  }
  worker(0);
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace tbfast
