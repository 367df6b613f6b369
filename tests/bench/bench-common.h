/* SPDX-License-Identifier: MIT */
/*
 * Shared by the benchmark kernels: timing, latency percentiles, a thread
 * runner and the JSON line each kernel prints for scripts/bench.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_SAMPLES_MAX (1 << 20)

static inline double bench_now(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* The calling thread's CPU time so far, in seconds. */
static inline double bench_thread_cpu(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* One thread's work: call op(arg) until the deadline, keeping latencies
 * (every one: scripts/bench plots their distribution) and the thread's
 * CPU time across the loop, what the work cost this process. */
struct bench_thread {
        int (*op)(void *arg);
        void *arg;
        double deadline;
        uint64_t ops, failures;
        double *lat;            /* seconds, up to nlat_max */
        size_t nlat, nlat_max;
        double cpu;             /* seconds of this thread's CPU in the loop */
        pthread_t tid;
};

static inline void *bench_thread_main(void *p)
{
        struct bench_thread *t = p;
        double cpu0 = bench_thread_cpu();

        for (;;) {
                double start = bench_now();

                if (start >= t->deadline)
                        break;
                if (t->op(t->arg) == 0)
                        t->ops++;
                else
                        t->failures++;
                if (t->nlat < t->nlat_max)
                        t->lat[t->nlat++] = bench_now() - start;
        }
        t->cpu = bench_thread_cpu() - cpu0;
        return NULL;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;

        return (x > y) - (x < y);
}

/* Latencies in ms, at most BENCH_CDF_POINTS of them evenly spread over
 * the sorted samples, for a CDF plot. */
#define BENCH_CDF_POINTS 200

static inline void bench_print_cdf(const double *sorted, size_t n)
{
        printf(", \"cdf_ms\": [");
        for (size_t i = 0; n && i < BENCH_CDF_POINTS; i++)
                printf("%s%.4f", i ? ", " : "", sorted[(size_t) ((double) i * (double) (n - 1) / (BENCH_CDF_POINTS - 1))] * 1e3);
        printf("]");
}

/* Run n threads (args[i] each) for seconds; print the JSON result line:
 * rate, p50 and p99, the CPU the threads used ("cpu_s", per-thread
 * clocks: the process's own work, not its waits) and the latency CDF. */
static inline int bench_run(const char *name, int (*op)(void *), void **args, int n, double seconds)
{
        struct bench_thread *t = calloc((size_t) n, sizeof(*t));
        double start, elapsed, *all, cpu = 0;
        uint64_t ops = 0, failures = 0;
        size_t nall = 0;

        if (!t)
                return 1;
        start = bench_now();
        for (int i = 0; i < n; i++) {
                t[i] = (struct bench_thread) { .op = op, .arg = args[i], .deadline = start + seconds,
                                               .nlat_max = BENCH_SAMPLES_MAX / (size_t) n };
                t[i].lat = malloc(t[i].nlat_max * sizeof(double));
                if (!t[i].lat || pthread_create(&t[i].tid, NULL, bench_thread_main, &t[i]) != 0) {
                        fprintf(stderr, "bench: cannot start thread %d\n", i);
                        exit(1);
                }
        }
        for (int i = 0; i < n; i++)
                pthread_join(t[i].tid, NULL);
        elapsed = bench_now() - start;
        all = malloc(BENCH_SAMPLES_MAX * sizeof(double));
        for (int i = 0; i < n; i++) {
                ops += t[i].ops;
                failures += t[i].failures;
                cpu += t[i].cpu;
                memcpy(all + nall, t[i].lat, t[i].nlat * sizeof(double));
                nall += t[i].nlat;
                free(t[i].lat);
        }
        qsort(all, nall, sizeof(double), bench_cmp_double);
        printf("{\"kernel\": \"%s\", \"threads\": %d, \"seconds\": %.3f, \"ops\": %llu, \"failures\": %llu, "
               "\"ops_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"cpu_s\": %.6f",
               name, n, elapsed, (unsigned long long) ops, (unsigned long long) failures, (double) ops / elapsed,
               nall ? all[nall / 2] * 1e3 : 0.0, nall ? all[(size_t) ((double) nall * 0.99)] * 1e3 : 0.0, cpu);
        bench_print_cdf(all, nall);
        printf("}\n");
        free(all);
        free(t);
        return failures ? 2 : 0;
}

/* The whole file at path; exits on error. */
static inline uint8_t *bench_read_file(const char *path, size_t *ret_len)
{
        FILE *f = fopen(path, "rb");
        uint8_t *data;
        long n;

        if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
                fprintf(stderr, "bench: cannot read %s\n", path);
                exit(1);
        }
        data = malloc((size_t) n + 1);
        if (!data || fread(data, 1, (size_t) n, f) != (size_t) n) {
                fprintf(stderr, "bench: cannot read %s\n", path);
                exit(1);
        }
        fclose(f);
        *ret_len = (size_t) n;
        return data;
}

#endif
