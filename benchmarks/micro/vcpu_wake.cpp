// How long a second CPU takes to start a new thread after the machine sat idle: the
// probe behind the README's note on run-to-run variance of the floor suite (whose timed
// calls follow a gc.collect() of ~60 ms on one core, leaving the other idle).
//
//   g++ -O2 -pthread benchmarks/micro/vcpu_wake.cpp -o /tmp/vcpu_wake && /tmp/vcpu_wake
//
// Each round sleeps idle_ms, then starts one thread and keeps the calling thread busy
// with the same work (~5.7 ms here). Printed: the median delay until the new thread runs,
// and the median time until both finished. On the 2-core KVM VM of the recorded runs:
// after 0-1 ms idle the thread starts in 25-40 us and both finish in 5.7 ms; after 10 or
// 60 ms idle it starts 1.9-3 ms late and both finish in ~11.5-11.8 ms (the work of one core run
// twice), i.e. a kernel of a few ms gets about one core.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

using clk = std::chrono::steady_clock;

static void work() {
  volatile double s = 0;
  for (int i = 0; i < 2000000; ++i) s += i * 0.5;
}

int main() {
  for (int idle_ms : {0, 1, 10, 60}) {
    std::vector<double> start_us, done_us;
    for (int r = 0; r < 15; ++r) {
      std::this_thread::sleep_for(std::chrono::milliseconds(idle_ms));
      auto t0 = clk::now();
      std::atomic<double> started{0};
      std::thread th([&] {
        started.store(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
        work();
      });
      work();
      th.join();
      start_us.push_back(started.load());
      done_us.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
    }
    std::sort(start_us.begin(), start_us.end());
    std::sort(done_us.begin(), done_us.end());
    printf("idle %2d ms: new thread starts after %6.0f us (median), both done after %6.0f us (median)\n", idle_ms,
           start_us[7], done_us[7]);
  }
  return 0;
}
