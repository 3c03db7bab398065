// How long a second CPU takes to start a new thread after the machine sat idle: the
// probe behind the README's note on run-to-run variance of the floor suite (whose timed
// calls follow a gc.collect() of ~60 ms on one core, leaving the other idle).
//
//   g++ -O2 -pthread benchmarks/micro/vcpu_wake.cpp -o /tmp/vcpu_wake && /tmp/vcpu_wake
//
// Each round sleeps idle_ms, then starts one thread and keeps the calling thread busy
// with the same work (~5.7 ms here). Printed: the median delay until the new thread runs,
// and the median time until both finished; then the same with a thread that was started
// once and waits on a condition variable between rounds. On the 2-core KVM VM of the recorded runs:
// after 0-1 ms idle the thread starts in 25-40 us and both finish in 5.7 ms; after 10 or
// 60 ms idle it starts 1.9-3 ms late and both finish in ~11.5-11.8 ms (the work of one core run
// twice), i.e. a kernel of a few ms gets about one core. A parked pool thread (condition
// variable) does better after 10 ms idle: it wakes in 68-79 us and gets the other core
// (both done after 6.0 ms); after 60 ms idle it is as late as a new thread (1.9-2.0 ms,
// both done after 11.7 ms), and after 0-1 ms it wakes in 17-20 us. So a persistent pool
// would not change the floor suite, whose gc.collect() idles ~60 ms before each call;
// calls 1-10 ms apart would gain from one.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

using clk = std::chrono::steady_clock;

static void work() {
  volatile double s = 0;
  for (int i = 0; i < 2000000; ++i) s += i * 0.5;
}

int main() {
  // A parked pool thread (waiting on a condition variable), woken the same way.
  std::mutex m;
  std::condition_variable cv;
  int generation = 0, finished = 0;
  bool quit = false;
  clk::time_point t0;
  std::atomic<double> pool_started{0};
  std::thread pool([&] {
    for (int seen = 0;;) {
      std::unique_lock<std::mutex> l(m);
      cv.wait(l, [&] { return generation != seen || quit; });
      if (quit) return;
      seen = generation;
      l.unlock();
      pool_started.store(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
      work();
      l.lock();
      finished = seen;
      cv.notify_all();
    }
  });
  for (int idle_ms : {0, 1, 10, 60}) {
    std::vector<double> start_us, done_us, pool_us, pool_done_us;
    for (int r = 0; r < 15; ++r) {
      std::this_thread::sleep_for(std::chrono::milliseconds(idle_ms));
      t0 = clk::now();
      std::atomic<double> started{0};
      std::thread th([&] {
        started.store(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
        work();
      });
      work();
      th.join();
      start_us.push_back(started.load());
      done_us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());

      std::this_thread::sleep_for(std::chrono::milliseconds(idle_ms));
      t0 = clk::now();
      {
        std::lock_guard<std::mutex> l(m);
        ++generation;
      }
      cv.notify_all();
      work();
      {
        std::unique_lock<std::mutex> l(m);
        cv.wait(l, [&] { return finished == generation; });
      }
      pool_us.push_back(pool_started.load());
      pool_done_us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
    }
    for (auto* v : {&start_us, &done_us, &pool_us, &pool_done_us}) std::sort(v->begin(), v->end());
    printf("idle %2d ms: new thread starts after %6.0f us, both done after %6.0f us | pool thread wakes after %6.0f us, "
           "both done after %6.0f us (medians)\n",
           idle_ms, start_us[7], done_us[7], pool_us[7], pool_done_us[7]);
  }
  {
    std::lock_guard<std::mutex> l(m);
    quit = true;
  }
  cv.notify_all();
  pool.join();
  return 0;
}
