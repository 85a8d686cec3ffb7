/* Small helpers shared by the native benchmarks (C11 and C++20).
 *
 * Results go to stdout as one JSON object per line; run.py reads them, computes the ratios and
 * prints the tables. Progress and errors go to stderr. Record kinds:
 *   {"kind":"pair","id":ID,"a":[ns/op per round...],"b":[...]}       A = stopper, B = reference
 *   {"kind":"samples","id":ID,"unit":"ns","n":N,"p50":..,"p90":..,"p99":..,"max":..,"mean":..,
 *    "values":[sorted, at most 2000, evenly spread by rank]}
 *   {"kind":"value","id":ID,"unit":UNIT,"value":V}
 *   {"kind":"rate","id":ID,"values":[items/s per round...]}
 *   {"kind":"note","text":TEXT}
 */
#ifndef STOPPER_BENCH_UTIL_H
#define STOPPER_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void bench_sleep_ns(int64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000LL);
    ts.tv_nsec = (long)(ns % 1000000000LL);
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int bench_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int bench_cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Value at quantile q (0..1) of a sorted array, nearest rank. */
static inline int64_t bench_quantile_i64(const int64_t *sorted, size_t n, double q)
{
    size_t k;
    if (n == 0)
        return 0;
    k = (size_t)(q * (double)n);
    if (k >= n)
        k = n - 1;
    return sorted[k];
}

static inline void bench_emit_doubles(const char *id, const char *kind, const double *v, size_t n)
{
    size_t i;
    printf("{\"kind\":\"%s\",\"id\":\"%s\",\"values\":[", kind, id);
    for (i = 0; i < n; i++)
        printf("%s%.6g", i ? "," : "", v[i]);
    printf("]}\n");
    fflush(stdout);
}

/* A = stopper, B = reference; ns per operation for each round. */
static inline void bench_emit_pair(const char *id, const double *a, const double *b, size_t rounds)
{
    size_t i;
    printf("{\"kind\":\"pair\",\"id\":\"%s\",\"a\":[", id);
    for (i = 0; i < rounds; i++)
        printf("%s%.6g", i ? "," : "", a[i]);
    printf("],\"b\":[");
    for (i = 0; i < rounds; i++)
        printf("%s%.6g", i ? "," : "", b[i]);
    printf("]}\n");
    fflush(stdout);
}

/* Sorts v in place and prints its summary plus a rank-spread subsample. */
static inline void bench_emit_samples(const char *id, int64_t *v, size_t n)
{
    size_t i, keep = n < 2000 ? n : 2000;
    double mean = 0;
    qsort(v, n, sizeof *v, bench_cmp_i64);
    for (i = 0; i < n; i++)
        mean += (double)v[i];
    if (n)
        mean /= (double)n;
    printf("{\"kind\":\"samples\",\"id\":\"%s\",\"unit\":\"ns\",\"n\":%zu,\"p50\":%lld,\"p90\":%lld,"
           "\"p99\":%lld,\"max\":%lld,\"mean\":%.1f,\"values\":[",
           id, n, (long long)bench_quantile_i64(v, n, 0.50), (long long)bench_quantile_i64(v, n, 0.90),
           (long long)bench_quantile_i64(v, n, 0.99), (long long)(n ? v[n - 1] : 0), mean);
    for (i = 0; i < keep; i++) {
        size_t k = keep == n ? i : (size_t)((double)i * (double)(n - 1) / (double)(keep - 1));
        printf("%s%lld", i ? "," : "", (long long)v[k]);
    }
    printf("]}\n");
    fflush(stdout);
}

static inline void bench_emit_value(const char *id, const char *unit, double value)
{
    printf("{\"kind\":\"value\",\"id\":\"%s\",\"unit\":\"%s\",\"value\":%.6g}\n", id, unit, value);
    fflush(stdout);
}

/* text must not contain quotes or backslashes */
static inline void bench_emit_note(const char *text)
{
    printf("{\"kind\":\"note\",\"text\":\"%s\"}\n", text);
    fflush(stdout);
}

static inline double bench_median(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, bench_cmp_dbl);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Resident set size in bytes (from /proc/self/statm). */
static inline int64_t bench_rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : (int64_t)resident * (int64_t)sysconf(_SC_PAGESIZE);
}

/* Threads of this process (entries of /proc/self/task). */
#include <dirent.h>
static inline int bench_thread_count(void)
{
    int n = 0;
    struct dirent *e;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

#endif
