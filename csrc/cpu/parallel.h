// CPU work splitting: a fixed set of work items handed to N threads through an atomic
// counter. Which thread runs an item never changes what the item computes, so results
// that are reduced per item in item order are deterministic whatever the thread count.
#pragma once
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace tbfast {

template <typename F>
void parallel_items(int64_t num_items, int num_threads, F&& fn) {
  if (num_threads > num_items) num_threads = (int)num_items;
  if (num_threads <= 1) {
    for (int64_t i = 0; i < num_items; ++i) fn(i, 0);
    return;
  }
  std::atomic<int64_t> next{0};
  auto worker = [&](int tid) {
    for (int64_t i = next.fetch_add(1); i < num_items; i = next.fetch_add(1)) fn(i, tid);
  };
  std::vector<std::thread> pool;
  pool.reserve(num_threads - 1);
  for (int t = 1; t < num_threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (auto& th : pool) th.join();
}

}  // namespace tbfast
