// The CPU backend's thread pool under stress: thousands of pools created, used and destroyed
// (a worker that started after the destructor bumped the epoch used to wait forever, so exit
// hung), and every task of every step run exactly once. Built once under ThreadSanitizer too.
#include <zeroclip/backend/cpu/parallel.hpp>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <vector>

namespace {

using zeroclip::detail::cpu::thread_pool;

// Runs `body` on its own thread; a hang is a failure of the whole test binary (a hung thread
// cannot be cancelled, so waiting for it would hang the suite instead of failing it).
template <class F>
void within_seconds(int seconds, const char* what, F body) {
    auto done = std::async(std::launch::async, body);
    if (done.wait_for(std::chrono::seconds(seconds)) != std::future_status::ready) {
        std::fprintf(stderr, "FAILED: %s did not finish within %d s (thread pool hang)\n", what, seconds);
        std::fflush(stderr);
        std::_Exit(3);
    }
    done.get();  // rethrows a failed check
}

}  // namespace

TEST_CASE("thread pool: thousands of create/destroy cycles never hang") {
    within_seconds(120, "pool create/destroy cycles", [] {
        for (int cycle = 0; cycle < 3000; ++cycle) {
            // Destroyed at once, before its workers have even started: the race of the exit hang.
            thread_pool pool(1 + cycle % 4);
        }
    });
}

TEST_CASE("thread pool: create, run steps, destroy, every task runs exactly once") {
    within_seconds(120, "pool create/run/destroy cycles", [] {
        std::atomic<int> bad_steps{0};
        for (int cycle = 0; cycle < 1500; ++cycle) {
            thread_pool pool(1 + cycle % 4);
            // Steps of alternating sizes back to back: a worker still claiming from a finished
            // small step must not take a task of the next, larger one (it used to).
            for (int step = 0; step < 1 + cycle % 6; ++step) {
                const int64_t n = step % 2 ? 1 + (cycle + step) % 5 : 20 + (cycle + step) % 37;
                std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
                const thread_pool::task_fn fn = [&](int64_t t) {
                    if (t < 0 || t >= n) ++bad_steps;  // never: only tasks of this step
                    else runs[static_cast<size_t>(t)].fetch_add(1);
                };
                const bool ran = pool.try_run(n, fn, 1 + (cycle + step) % 4);
                bool once = ran;
                for (const auto& r : runs) once = once && r.load() == 1;
                if (!once) ++bad_steps;
            }
        }
        CHECK(bad_steps == 0);
    });
}

TEST_CASE("thread pool: parallel_tasks runs each task exactly once, many times over") {
    within_seconds(120, "parallel_tasks steps", [] {
        int bad_steps = 0;
        for (int step = 0; step < 5000; ++step) {
            const int64_t n = step % 2 ? 1 + step % 3 : 1 + step % 53;
            std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
            zeroclip::detail::cpu::parallel_tasks(n, [&](int64_t t) { runs[static_cast<size_t>(t)].fetch_add(1); },
                                                  step % 5);
            for (const auto& r : runs)
                if (r.load() != 1) ++bad_steps;
        }
        CHECK(bad_steps == 0);
    });
}
