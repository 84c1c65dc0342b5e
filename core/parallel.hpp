#pragma once
/// @file The one worker pool of sigprop: f(i) for i = 0..n-1 on a few threads. Callers make
/// every f(i) write only its own slot and reduce the slots in index order afterwards, so no
/// number depends on the thread count (MODEL.md §3, "whatever the thread count").
#include <algorithm>
#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace sigprop {

/// threads > 0 as given, else the hardware's thread count; never more than n, at least 1.
inline int resolve_threads(int threads, int n) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, std::min(threads > 0 ? threads : hw, n));
}

/// f(i) for every i in [0, n) on resolve_threads(threads, n) workers (the calling thread is
/// one of them), indices handed out in increasing order. After the first exception no new
/// index starts; it is rethrown once every worker has stopped.
template <class F>
void parallel_for(int n, int threads, F&& f) {
  if (n <= 0) return;
  const int nt = resolve_threads(threads, n);
  std::atomic<int> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    try {
      for (int i = next++; i < n && !failed; i = next++) f(i);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!failed.exchange(true)) error = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < nt; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace sigprop
