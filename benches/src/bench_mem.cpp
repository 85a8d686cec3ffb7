// bench_mem: heap bytes per idle stopper, against std::stop_source.
//
//   bench_mem [N]      (default 100000)
//
// N objects are created while the counting malloc (malloc_count.c) is on; it reports the
// usable bytes (malloc_usable_size) and the number of allocations per object. mallinfo2's
// in-use delta, which also counts malloc's per-chunk header, is printed beside it, and the
// resident-set growth as a cross-check that nothing is allocated behind malloc's back (mmap).

#include "bench_util.h"

#include <stopper.h>

#include <malloc.h>
#include <stop_token>
#include <vector>

extern "C" {
extern int malloc_count_on;
extern long long malloc_count_bytes;
extern long long malloc_count_allocs;
}

namespace {

struct Measure {
    double usable, allocs, chunk, rss;
};

template <class Make> Measure measure(long n, Make make)
{
    malloc_trim(0);
    struct mallinfo2 m0 = mallinfo2();
    int64_t rss0 = bench_rss_bytes();
    malloc_count_bytes = 0;
    malloc_count_allocs = 0;
    malloc_count_on = 1;
    for (long i = 0; i < n; i++)
        make(i);
    malloc_count_on = 0;
    struct mallinfo2 m1 = mallinfo2();
    int64_t rss1 = bench_rss_bytes();
    Measure r;
    r.usable = (double)malloc_count_bytes / (double)n;
    r.allocs = (double)malloc_count_allocs / (double)n;
    r.chunk = ((double)(m1.uordblks + m1.hblkhd) - (double)(m0.uordblks + m0.hblkhd)) / (double)n;
    r.rss = (double)(rss1 - rss0) / (double)n;
    return r;
}

void emit(const char *who, const Measure &m)
{
    char id[96];
    std::snprintf(id, sizeof id, "mem_%s_usable", who);
    bench_emit_value(id, "B", m.usable);
    std::snprintf(id, sizeof id, "mem_%s_allocs", who);
    bench_emit_value(id, "allocs", m.allocs);
    std::snprintf(id, sizeof id, "mem_%s_chunk", who);
    bench_emit_value(id, "B", m.chunk);
    std::snprintf(id, sizeof id, "mem_%s_rss", who);
    bench_emit_value(id, "B", m.rss);
}

} // namespace

int main(int argc, char **argv)
{
    long n = argc > 1 ? std::atol(argv[1]) : 100000;
    if (n < 1) {
        std::fprintf(stderr, "usage: bench_mem [N]\n");
        return 2;
    }
    std::printf("{\"kind\":\"meta\",\"program\":\"bench_mem\",\"n\":%ld}\n", n);

    // Warm up both (first-use allocations, e.g. thread-locals, are not per-object costs).
    stopper_release(stopper_new());
    { std::stop_source warm; }

    std::vector<stopper *> ss((size_t)n, nullptr);
    Measure ms = measure(n, [&](long i) { ss[(size_t)i] = stopper_new(); });
    for (auto *s : ss) {
        if (!s) {
            std::fprintf(stderr, "bench_mem: stopper_new returned NULL\n");
            return 2;
        }
        if (stopper_is_set(s)) {
            std::fprintf(stderr, "bench_mem: a new stopper is already stopped\n");
            return 2;
        }
    }

    std::vector<std::stop_source> srcs;
    srcs.reserve((size_t)n);
    Measure mstd = measure(n, [&](long) { srcs.emplace_back(); });

    emit("stopper", ms);
    emit("std", mstd);
    for (auto *s : ss)
        stopper_release(s);
    return 0;
}
