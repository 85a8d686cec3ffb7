#include "harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

extern char **environ;

namespace th {

namespace {
std::atomic<int> g_failures{0};
std::mutex g_print;
const char *volatile g_current = "(none)";
constexpr unsigned k_test_alarm_s = 30;

void on_alarm(int) {
    const char *name = g_current;
    static const char pre[] = "\nFATAL: test timed out (alarm): ";
    ssize_t r = write(2, pre, sizeof pre - 1);
    r = write(2, name, strlen(name));
    r = write(2, "\n", 1);
    (void)r;
    _exit(3);
}
}  // namespace

std::vector<test_case> &registry() {
    static std::vector<test_case> r;
    return r;
}

std::vector<child_mode> &child_modes() {
    static std::vector<child_mode> r;
    return r;
}

void fail(const char *file, int line, const std::string &what) {
    g_failures.fetch_add(1);
    std::lock_guard<std::mutex> lock(g_print);
    std::fprintf(stderr, "  FAIL %s:%d: %s\n", file, line, what.c_str());
    std::fflush(stderr);
}

bool fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

int run_self(const char *arg, std::string &err) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 2);
    std::string mode = std::string("--child=") + arg;
    char self[] = "/proc/self/exe";
    char *argv[] = {self, mode.data(), nullptr};
    pid_t pid = -1;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return -1;
    }
    char buf[4096];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            err.append(buf, static_cast<size_t>(n));
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

}  // namespace th

int main(int argc, char **argv) {
    if (argc > 1 && std::strncmp(argv[1], "--child=", 8) == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);  // child modes may abort on purpose
        alarm(20);
        for (const auto &m : th::child_modes())
            if (std::strcmp(m.name, argv[1] + 8) == 0)
                return m.fn();
        std::fprintf(stderr, "unknown child mode %s\n", argv[1]);
        return 100;
    }

    const char *filter = argc > 1 ? argv[1] : nullptr;
    signal(SIGALRM, th::on_alarm);
    int passed = 0, failed = 0;
    std::printf("stopper C++ suite, C++ %ld, %s\n", static_cast<long>(__cplusplus),
#if defined(STOPPER_HPP_HAS_STOP_TOKEN)
                "with the std::stop_token bridge"
#else
                "without the std::stop_token bridge"
#endif
    );
    for (const auto &t : th::registry()) {
        if (filter && !std::strstr(t.name, filter))
            continue;
        th::g_current = t.name;
        int before = th::g_failures.load();
        auto t0 = th::clock::now();
        alarm(th::k_test_alarm_s);
        t.fn();
        alarm(0);
        bool ok = th::g_failures.load() == before;
        (ok ? passed : failed)++;
        std::printf("%s %s (%.0f ms)\n", ok ? "ok  " : "FAIL", t.name, th::ms_since(t0));
        std::fflush(stdout);
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
