// SIGINT / SIGTERM during a streaming run: the handler only records the signal; the run finishes
// writing the batch in hand, flushes, says how to resume and exits 130. A second signal while
// that happens kills the process at once (the default action), for a user who will not wait.
#pragma once

#include <signal.h>

#include <csignal>

namespace zeroclip_cli {

namespace detail {
inline volatile std::sig_atomic_t& pending_signal() {
    static volatile std::sig_atomic_t s = 0;
    return s;
}
extern "C" inline void record_signal(int sig) {
    if (pending_signal() != 0) {
        ::signal(sig, SIG_DFL);
        ::raise(sig);
        return;
    }
    pending_signal() = sig;
}
}  // namespace detail

/// Exit code of a run stopped by a signal (as a shell reports SIGINT).
constexpr int interrupted_exit_code = 130;

/// Catches SIGINT and SIGTERM while alive; restores the previous handlers when destroyed.
class interrupt_guard {
public:
    interrupt_guard() {
        detail::pending_signal() = 0;
        struct sigaction sa {};
        sa.sa_handler = detail::record_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;  // a signal never turns a write into a short one
        ::sigaction(SIGINT, &sa, &old_int_);
        ::sigaction(SIGTERM, &sa, &old_term_);
    }
    interrupt_guard(const interrupt_guard&) = delete;
    interrupt_guard& operator=(const interrupt_guard&) = delete;
    ~interrupt_guard() {
        ::sigaction(SIGINT, &old_int_, nullptr);
        ::sigaction(SIGTERM, &old_term_, nullptr);
    }
    /// The signal received (SIGINT or SIGTERM), or 0.
    static int received() { return detail::pending_signal(); }

private:
    struct sigaction old_int_ {}, old_term_ {};
};

/// Thrown from a batch callback after the batch was written, to stop the stream.
struct interrupted {
    int signal;
};

}  // namespace zeroclip_cli
