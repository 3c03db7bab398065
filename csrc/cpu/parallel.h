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
//    exception is rethrown on the calling thread once no item is running (tbf_run then
//    turns it into a Status).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace tbfast {

// Scratch that grows with (threads x problem size), e.g. a private histogram per thread,
// stays under this many bytes in total: kernels run fewer threads rather than more memory.
constexpr double kScratchBudgetBytes = 256.0 * (1 << 20);

// floor(fit) threads, at least 1 and at most num_threads.
inline int threads_that_fit(int num_threads, double fit) {
  if (num_threads < 1) num_threads = 1;
  if (!(fit >= 1.0)) return 1;
  return fit < (double)num_threads ? (int)fit : num_threads;
}

// Threads (at most num_threads, at least 1) whose private scratch of bytes_per_thread
// each fits kScratchBudgetBytes. One thread is always allowed: its scratch is needed
// whatever the thread count, and if even that cannot be allocated the kernel's
// std::bad_alloc becomes kOutOfMemory.
inline int threads_for_scratch(int num_threads, double bytes_per_thread) {
  return threads_that_fit(num_threads, bytes_per_thread > 0 ? kScratchBudgetBytes / bytes_per_thread
                                                            : std::numeric_limits<double>::infinity());
}

// Input bytes that make a second thread worth starting in the streaming kernels
// (histogram, PR curve, image grid: ~0.1 ns per byte and core). Starting a thread costs
// 10-40 us on a warm machine and ~0.1 ms or more after the CPU idled, so a thread that
// gets less than about 100 us of work makes the call slower: measured with float32
// histograms, 2 threads lose at 10^5 elements (0.081 against 0.069 ms), are even at
// 3 * 10^5 (1.2 MB) and win at 10^6 (0.23 against 0.32 ms).
constexpr double kMinBytesPerThread = 1 << 20;

// Threads (at most num_threads, at least 1) such that each gets at least min_per_thread of
// work units.
inline int threads_for_work(int num_threads, double work, double min_per_thread) {
  return threads_that_fit(num_threads, work / min_per_thread);
}

// State shared by parallel_items and its workers (kept alive by whichever leaves last).
struct ItemQueue {
  std::atomic<int64_t> next{0};  // the next item to claim
  std::atomic<int> busy{0};      // threads between announcing a claim and finishing its item
  std::mutex error_lock;
  std::exception_ptr error;      // the first exception an item threw
  std::mutex idle_lock;          // with idle: the caller sleeps until busy drops to 0
  std::condition_variable idle;

  void leave() noexcept {
    if (busy.fetch_sub(1) == 1) {  // taken under the lock, so the caller cannot miss it
      std::lock_guard<std::mutex> g(idle_lock);
      idle.notify_all();
    }
  }

  // Until no thread is inside an item: a short spin (an item is typically tens of
  // microseconds), then sleep.
  void wait_idle() {
    const auto t0 = std::chrono::steady_clock::now();
    while (busy.load() != 0) {
      if (std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(200)) {
        std::unique_lock<std::mutex> l(idle_lock);
        idle.wait(l, [this] { return busy.load() == 0; });
        return;
      }
      std::this_thread::yield();
    }
  }

  // Runs items until none is left. fn is touched only after a successful claim, while busy
  // counts this thread, so a worker that starts after the caller returned never reaches it.
  template <typename F>
  void drain(int64_t num_items, F* fn, int tid) noexcept {
    for (;;) {
      busy.fetch_add(1);  // before the claim: see parallel_items
      const int64_t i = next.fetch_add(1);
      if (i >= num_items) {
        leave();
        return;
      }
      try {
        (*fn)(i, tid);
      } catch (...) {
        std::lock_guard<std::mutex> g(error_lock);
        if (!error) error = std::current_exception();
        next.store(num_items);  // the others stop taking items
      }
      leave();
    }
  }
};

// Runs fn(item, tid) for every item in [0, num_items) on up to num_threads threads (tid 0
// is the calling thread). Returns once every item has run. It does not wait for a worker
// that has not claimed an item by then: on a VM an idle CPU can take milliseconds to start
// a thread, and such a worker, once it runs, finds no item and exits without touching fn
// (workers are detached and share the queue through a shared_ptr). The caller waits only
// while some thread is inside an item: a thread announces itself in busy before it claims,
// so once the caller's own claim has failed (every item taken), busy == 0 means every
// claimed item has finished, and any later claim fails.
template <typename F>
void parallel_items(int64_t num_items, int num_threads, F&& fn) {
  if (num_threads > num_items) num_threads = (int)num_items;
  std::shared_ptr<ItemQueue> q;
  if (num_threads > 1) {
    try {
      q = std::make_shared<ItemQueue>();
    } catch (...) {  // no memory for the queue: run on the calling thread
    }
  }
  if (!q) {
    for (int64_t i = 0; i < num_items; ++i) fn(i, 0);
    return;
  }
  auto* f = &fn;
  try {
    for (int t = 1; t < num_threads; ++t) std::thread([q, num_items, f, t] { q->drain(num_items, f, t); }).detach();
  } catch (...) {
    // No more threads (EAGAIN under a thread or address-space limit): run with those
    // that started; the calling thread takes whatever they leave.
  }
  q->drain(num_items, f, 0);
  q->wait_idle();
  if (q->error) std::rethrow_exception(q->error);
}

}  // namespace tbfast
