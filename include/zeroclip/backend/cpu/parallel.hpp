//! Work sharing for the CPU backend: a small pool of persistent threads and a calling thread that
//! works too. A parallel step is a number of tasks handed out one at a time from an atomic
//! counter; the caller claims tasks like any worker and then waits only for the tasks that
//! workers have claimed — never for a worker that has not started. On a machine shared with
//! other jobs a thread of the team is often off its core for a whole scheduler slice (ms); with an
//! OpenMP team every step would wait for it at its closing barrier (2 threads then run slower than
//! 1), here the others take its share. Idle workers spin for a short while (ZEROCLIP_SPIN_US,
//! default 50 µs), then sleep on a condition variable.
//!
//! The team size is OpenMP's max threads when the build has OpenMP (so OMP_NUM_THREADS applies),
//! else the hardware's; ZEROCLIP_NUM_THREADS overrides both. A step started from a pool worker,
//! or while another thread's step holds the pool, runs on its calling thread alone.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ZEROCLIP_CPU_PAUSE() _mm_pause()
#else
#define ZEROCLIP_CPU_PAUSE() std::this_thread::yield()
#endif

namespace zeroclip::detail::cpu {

inline int env_int(const char* name, int fallback) {
    const char* v = std::getenv(name);
    if (!v || !*v) return fallback;
    const int n = std::atoi(v);
    return n > 0 ? n : fallback;
}

/// The team size for parallel steps (the caller included).
inline int configured_threads() {
    static const int n = [] {
#ifdef _OPENMP
        int t = omp_get_max_threads();
#else
        int t = static_cast<int>(std::thread::hardware_concurrency());
#endif
        return std::max(1, env_int("ZEROCLIP_NUM_THREADS", std::max(1, t)));
    }();
    return n;
}

inline bool& in_pool_worker() {
    thread_local bool flag = false;
    return flag;
}

class thread_pool {
public:
    using task_fn = std::function<void(int64_t)>;

    explicit thread_pool(int workers) : spin_us_(env_int("ZEROCLIP_SPIN_US", 50)) {
        // Each worker is given the epoch it starts from here, before it runs: were it to read the
        // epoch itself, a step or the destructor could bump it first and the worker would wait
        // for an epoch that never comes (a hang at exit).
        const uint64_t start_epoch = state_.load() >> 32;
        for (int i = 0; i < workers; ++i) threads_.emplace_back([this, start_epoch] { worker(start_epoch); });
    }
    ~thread_pool() {
        {
            std::lock_guard<std::mutex> l(m_);
            stop_.store(true);
            state_.fetch_add(uint64_t{1} << 32);
        }
        cv_.notify_all();
        for (auto& t : threads_) t.join();
    }
    thread_pool(const thread_pool&) = delete;
    thread_pool& operator=(const thread_pool&) = delete;

    int workers() const { return static_cast<int>(threads_.size()); }

    /// fn(t) for t in [0, n), by the caller and up to `helpers` workers. Returns false (nothing
    /// run) when another thread's step holds the pool, or n does not fit the task counter.
    bool try_run(int64_t n, const task_fn& fn, int helpers) {
        if (n >= static_cast<int64_t>(closed_count)) return false;
        std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
        if (!busy.owns_lock()) return false;
        // First close the previous step (an epoch of its own whose counter is past every n): a
        // worker still inside claim() for the previous epoch could otherwise compare that epoch's
        // counter with the new n, take a task that does not exist, and call fn_ racing with its
        // update (a task run twice, or a call through a dangling fn_).
        const uint64_t closed = (state_.load(std::memory_order_relaxed) >> 32) + 1;
        state_.store(closed << 32 | closed_count, std::memory_order_seq_cst);
        fn_ = &fn;
        n_.store(n, std::memory_order_release);
        helpers_.store(helpers, std::memory_order_relaxed);
        done_.store(0, std::memory_order_relaxed);
        // A new epoch with the counter at 0: workers claim (epoch, i) → (epoch, i + 1) by CAS, so
        // a worker that wakes up late cannot take a task of a later step.
        const uint64_t epoch = closed + 1;
        state_.store(epoch << 32, std::memory_order_seq_cst);
        if (sleepers_.load(std::memory_order_seq_cst) > 0) {
            std::lock_guard<std::mutex> l(m_);
            cv_.notify_all();
        }
        for (int64_t t; (t = claim(epoch)) >= 0;) {
            fn(t);
            done_.fetch_add(1, std::memory_order_acq_rel);
        }
        while (done_.load(std::memory_order_acquire) < n) ZEROCLIP_CPU_PAUSE();
        return true;
    }

private:
    /// The task counter of a closed step: no step has that many tasks, so nothing can be claimed.
    static constexpr uint64_t closed_count = 0xffffffffu;

    /// The next task of `epoch`, or −1 when it has none left (or a later step has begun).
    int64_t claim(uint64_t epoch) {
        uint64_t s = state_.load(std::memory_order_acquire);
        while ((s >> 32) == epoch && static_cast<int64_t>(s & 0xffffffffu) < n_.load(std::memory_order_acquire)) {
            if (state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) return static_cast<int64_t>(s & 0xffffffffu);
        }
        return -1;
    }

    /// True when state `s` is a step a worker that last saw epoch `seen` has not joined yet (a
    /// closed step, being set up, is not).
    static bool is_new_step(uint64_t s, uint64_t seen) {
        return (s >> 32) != seen && (s & 0xffffffffu) != closed_count;
    }

    void worker(uint64_t seen) {
        in_pool_worker() = true;
        for (;;) {
            if (stop_.load()) return;
            // Wait for a new step: spin a little, then sleep.
            uint64_t s = state_.load(std::memory_order_acquire);
            if (!is_new_step(s, seen)) {
                const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
                do {
                    for (int i = 0; i < 64; ++i) ZEROCLIP_CPU_PAUSE();
                    s = state_.load(std::memory_order_acquire);
                } while (!is_new_step(s, seen) && !stop_.load(std::memory_order_relaxed) &&
                         std::chrono::steady_clock::now() < until);
            }
            if (!is_new_step(s, seen)) {
                std::unique_lock<std::mutex> l(m_);
                sleepers_.fetch_add(1, std::memory_order_seq_cst);
                // stop_ is set under m_, so checking it here under the lock cannot miss it.
                cv_.wait(l, [&] {
                    s = state_.load(std::memory_order_seq_cst);
                    return stop_.load() || is_new_step(s, seen);
                });
                sleepers_.fetch_sub(1, std::memory_order_seq_cst);
            }
            if (stop_.load()) return;
            const uint64_t epoch = s >> 32;
            seen = epoch;
            if (helpers_.fetch_sub(1, std::memory_order_acq_rel) <= 0) continue;  // the step wants fewer
            for (int64_t t; (t = claim(epoch)) >= 0;) {
                (*fn_)(t);  // valid: the caller waits for this task before its step ends
                done_.fetch_add(1, std::memory_order_acq_rel);
            }
        }
    }

    std::vector<std::thread> threads_;
    std::mutex run_mutex_;  // one step at a time
    std::mutex m_;          // sleeping
    std::condition_variable cv_;
    std::atomic<uint64_t> state_{0};  // epoch << 32 | next task
    std::atomic<int64_t> done_{0};
    std::atomic<int> sleepers_{0};
    std::atomic<int> helpers_{0};
    const task_fn* fn_ = nullptr;
    std::atomic<int64_t> n_{0};
    std::atomic<bool> stop_{false};
    int spin_us_;
};

/// The process's pool (configured_threads() − 1 workers), started on first use.
inline thread_pool& pool() {
    static thread_pool p(configured_threads() - 1);
    return p;
}

/// Threads a step may use from here: 1 on a pool worker (no nesting), else the team size.
inline int max_threads() { return in_pool_worker() ? 1 : configured_threads(); }

/// fn(task) for every task in [0, n), each run exactly once, on up to `threads` threads
/// (0: the team size).
template <class F>
void parallel_tasks(int64_t n, F&& fn, int threads = 0) {
    if (n <= 0) return;
    int team = max_threads();
    if (threads > 0) team = std::min(team, threads);
    team = static_cast<int>(std::min<int64_t>(team, n));
    if (team > 1) {
        const thread_pool::task_fn f = [&fn](int64_t t) { fn(t); };
        if (pool().try_run(n, f, team - 1)) return;
    }
    for (int64_t t = 0; t < n; ++t) fn(t);
}

/// fn(begin, end) over [0, n) in chunks of at least `grain` items; serial when n < 2·grain.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    grain = std::max<int64_t>(grain, 1);
    const int team = max_threads();
    if (team <= 1 || n < 2 * grain) {
        fn(int64_t{0}, n);
        return;
    }
    // A few chunks per thread: enough to rebalance when one thread is preempted.
    const int64_t chunks = std::min<int64_t>(n / grain, int64_t{4} * team);
    parallel_tasks(chunks, [&](int64_t c) { fn(c * n / chunks, (c + 1) * n / chunks); });
}

/// A per-thread scratch buffer of at least `n` floats, 64-byte aligned, kept between calls (no
/// allocation once the largest size has been seen). `slot` (0-5) separates buffers in use at once.
inline float* scratch(size_t n, int slot = 0) {
    thread_local std::vector<float> buffers[6];
    std::vector<float>& b = buffers[slot];
    if (b.size() < n + 16) b.resize(n + 16);
    const auto p = reinterpret_cast<uintptr_t>(b.data());
    return reinterpret_cast<float*>((p + 63) & ~uintptr_t{63});
}

}  // namespace zeroclip::detail::cpu
