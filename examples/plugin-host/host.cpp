// A plugin host: dlopen()s plugins (shared objects linked against libstopper), runs their
// workers under stoppers it owns, stops them, joins them, dlclose()s them.
//
//   host demo  PLUGIN...              load each, run them side by side, stop one at a time
//   host check [--cycles N] A.so B.so N load/run/stop/unload cycles in one process, then
//                                      two plugins at once with their own stoppers; fails
//                                      (exit 1) on a thread, descriptor or memory left behind
#include "plugin_api.h"

#include <dirent.h>
#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono;
using namespace std::chrono_literals;

namespace {

// ------------------------------------------------------------------ process accounting

int count_tasks() {
    int n = 0;
    if (DIR *d = opendir("/proc/self/task")) {
        while (dirent *e = readdir(d))
            if (e->d_name[0] != '.')
                n++;
        closedir(d);
    }
    return n;
}

// Open descriptors as "number -> what", leaving out the one used to list them.
std::set<std::string> open_fds() {
    std::set<std::string> out;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return out;
    int self = dirfd(d);
    while (dirent *e = readdir(d)) {
        if (e->d_name[0] == '.' || std::atoi(e->d_name) == self)
            continue;
        char target[512] = {0};
        std::string link = std::string("/proc/self/fd/") + e->d_name;
        ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
        out.insert(std::string(e->d_name) + " -> " + (n > 0 ? std::string(target, static_cast<size_t>(n)) : "?"));
    }
    closedir(d);
    return out;
}

long rss_kib() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmRSS:", 0) == 0)
            return std::atol(line.c_str() + 6);
    return -1;
}

// Threads end a little after they leave their stopper, and the library's service thread
// exits once idle: wait (bounded) for the count to come back.
bool tasks_back_to(int n, milliseconds limit) {
    auto until = steady_clock::now() + limit;
    while (count_tasks() > n) {
        if (steady_clock::now() > until)
            return false;
        std::this_thread::sleep_for(10ms);
    }
    return true;
}

// ------------------------------------------------------------------ plugins

struct plugin {
    std::string path;
    void *handle = nullptr;
    const plugin_v1 *api = nullptr;

    explicit plugin(std::string p) : path(std::move(p)) {}

    bool load(std::string &err) {
        handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (!handle) {
            err = dlerror();
            return false;
        }
        auto entry = reinterpret_cast<const plugin_v1 *(*)()>(dlsym(handle, "plugin_entry"));
        api = entry ? entry() : nullptr;
        if (!api || api->abi != PLUGIN_ABI) {
            err = path + ": no plugin_entry or wrong PLUGIN_ABI";
            dlclose(handle);
            handle = nullptr;
            return false;
        }
        return true;
    }

    // dlclose, then make sure the object is really gone from the process.
    bool unload(std::string &err) {
        api = nullptr;
        if (dlclose(handle) != 0) {
            err = dlerror();
            return false;
        }
        handle = nullptr;
        if (void *still = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD)) {
            dlclose(still);
            err = path + " is still mapped after dlclose";
            return false;
        }
        return true;
    }

    // Waits (bounded) until the plugin's progress passes `than`.
    bool progresses(uint64_t than, milliseconds limit = 2000ms) const {
        auto until = steady_clock::now() + limit;
        while (api->progress() <= than) {
            if (steady_clock::now() > until)
                return false;
            std::this_thread::sleep_for(1ms);
        }
        return true;
    }
};

int g_passed = 0, g_failed = 0;

void expect(bool ok, const std::string &what) {
    (ok ? g_passed : g_failed)++;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    std::fflush(stdout);
}

// One cycle: load, start a worker in a new stopper, let it work, stop + join, unload.
bool cycle(const std::string &path, std::string &err) {
    plugin p(path);
    if (!p.load(err))
        return false;
    bool ok = true;
    {
        stopper::source s;
        int32_t rc = p.api->start(s.native());
        if (rc != STOPPER_OK) {
            err = "start: " + std::string(stopper::stopper_strerror(rc));
            ok = false;
        } else if (!p.progresses(0)) {
            err = "the worker did no work within 2 s";
            ok = false;
        }
        if (!s.join(2s)) {  // stop, then wait for the worker to leave the stopper
            err = "join timed out: the worker did not stop";
            return false;  // never unload code that may still run
        }
    }
    return p.unload(err) && ok;
}

// ------------------------------------------------------------------ check

int check(int cycles, const std::string &a_path, const std::string &b_path) {
    const int tasks0 = count_tasks();
    const std::set<std::string> fds0 = open_fds();
    std::printf("plugin-host check: %d cycles of %s / %s\n", cycles, a_path.c_str(), b_path.c_str());

    // Warm-up: the first cycles grow the allocator's and the loader's caches.
    std::string err;
    bool ok = true;
    for (int i = 0; i < 50 && ok; i++)
        ok = cycle(i % 2 ? b_path : a_path, err);
    expect(ok, "warm-up cycles" + (ok ? std::string() : ": " + err));
    if (!ok)
        return 1;
    const long rss_warm = rss_kib();

    auto t0 = steady_clock::now();
    int done = 0;
    for (; done < cycles; done++)
        if (!cycle(done % 2 ? b_path : a_path, err))
            break;
    double secs = duration<double>(steady_clock::now() - t0).count();
    expect(done == cycles, std::to_string(done) + " of " + std::to_string(cycles) +
                               " load/run/stop/join/unload cycles (" + std::to_string(static_cast<int>(secs * 1e6 / (done ? done : 1))) +
                               " us each)" + (done == cycles ? "" : ": " + err));
    const long rss_end = rss_kib();

    bool threads_gone = tasks_back_to(tasks0, 2500ms);
    expect(threads_gone, "no thread left: " + std::to_string(count_tasks()) + " task(s), " +
                             std::to_string(tasks0) + " before the first plugin");
    std::set<std::string> fds1 = open_fds();
    std::string extra;
    for (const auto &f : fds1)
        if (!fds0.count(f))
            extra += " [" + f + "]";
    expect(fds1 == fds0, "no file descriptor left (" + std::to_string(fds1.size()) + " open, " +
                             std::to_string(fds0.size()) + " before)" + extra);
    const long growth = rss_end - rss_warm;
    expect(growth < 8 * 1024, "resident memory flat: " + std::to_string(rss_warm) + " KiB after warm-up, " +
                                  std::to_string(rss_end) + " KiB after the cycles (limit +8 MiB)");

    // Two plugins at once, each with two stoppers of its own, stopped one by one.
    plugin A(a_path), B(b_path);
    if (!A.load(err) || !B.load(err)) {
        expect(false, "load two plugins: " + err);
        return 1;
    }
    stopper::source a1, a2, b1, b2;
    bool started = A.api->start(a1.native()) == STOPPER_OK && A.api->start(a2.native()) == STOPPER_OK &&
                   B.api->start(b1.native()) == STOPPER_OK && B.api->start(b2.native()) == STOPPER_OK;
    expect(started && A.progresses(0) && B.progresses(0), "two plugins loaded at once, four workers running");

    expect(a1.join(2s), "stop and join A's first stopper");
    expect(!a2.is_set() && !b1.is_set() && !b2.is_set(), "the other three stoppers still run");
    expect(A.progresses(A.api->progress()) && B.progresses(B.api->progress()),
           "A (second worker) and B still make progress");

    expect(b2.join(2s), "stop and join B's second stopper");
    expect(A.progresses(A.api->progress()) && B.progresses(B.api->progress()), "A and B still make progress");

    expect(a2.join(2s), "stop and join A's second stopper");
    uint64_t a_now = A.api->progress();
    std::this_thread::sleep_for(30ms);
    expect(A.api->progress() == a_now, "A does nothing once both its stoppers stopped");
    err.clear();
    expect(A.unload(err), "unload A while B runs" + (err.empty() ? "" : ": " + err));
    expect(!b1.is_set() && B.progresses(B.api->progress()), "B still makes progress after A is gone");

    expect(b1.join(2s), "stop and join B's first stopper");
    err.clear();
    expect(B.unload(err), "unload B" + (err.empty() ? "" : ": " + err));
    expect(a1.reason() == STOPPER_REASON_REQUESTED && b1.reason() == STOPPER_REASON_REQUESTED,
           "each stopper recorded its own stop");

    std::printf("plugin-host check: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}

// ------------------------------------------------------------------ demo

int demo(const std::vector<std::string> &paths) {
    std::printf("host: %d thread(s) before any plugin\n", count_tasks());
    std::vector<plugin> plugins;
    std::vector<stopper::source> stoppers;
    std::string err;
    for (const auto &p : paths) {
        plugins.emplace_back(p);
        if (!plugins.back().load(err)) {
            std::fprintf(stderr, "host: cannot load %s: %s\n", p.c_str(), err.c_str());
            return 1;
        }
        stoppers.emplace_back();
        int32_t rc = plugins.back().api->start(stoppers.back().native());
        std::printf("host: loaded %-14s -> %s, worker started\n", plugins.back().api->name,
                    stopper::stopper_strerror(rc));
    }
    std::printf("host: %d thread(s) with the plugins running\n", count_tasks());
    std::this_thread::sleep_for(500ms);
    for (size_t i = 0; i < plugins.size(); i++) {
        auto t0 = steady_clock::now();
        bool joined = stoppers[i].join(2s);
        double ms = duration<double, std::milli>(steady_clock::now() - t0).count();
        std::printf("host: stopped %-14s after %llu units; joined in %.3f ms: %s\n", plugins[i].api->name,
                    static_cast<unsigned long long>(plugins[i].api->progress()), ms, joined ? "ok" : "TIMED OUT");
        for (size_t j = i + 1; j < plugins.size(); j++)
            std::printf("host:   %s keeps running (%llu units)\n", plugins[j].api->name,
                        static_cast<unsigned long long>(plugins[j].api->progress()));
        if (!joined)
            return 1;
        std::string name = plugins[i].api->name;
        bool gone = plugins[i].unload(err);
        std::printf("host: unloaded %s: %s\n", name.c_str(), gone ? "no longer mapped" : err.c_str());
    }
    bool back = tasks_back_to(1, 2500ms);
    std::printf("host: %d thread(s) after unloading everything%s\n", count_tasks(),
                back ? "" : " (the library's service thread has not exited yet)");
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args[0] == "demo" && args.size() >= 2)
        return demo(std::vector<std::string>(args.begin() + 1, args.end()));
    if (!args.empty() && args[0] == "check") {
        int cycles = 1000;
        size_t i = 1;
        if (args.size() > 2 && args[1] == "--cycles") {
            cycles = std::atoi(args[2].c_str());
            i = 3;
        }
        if (args.size() == i + 2)
            return check(cycles, args[i], args[i + 1]);
    }
    std::fprintf(stderr, "usage: %s demo PLUGIN.so...\n       %s check [--cycles N] A.so B.so\n", argv[0], argv[0]);
    return 2;
}
