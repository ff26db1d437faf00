/* metrics.c — counters and histograms for GET /metrics (Prometheus text format 0.0.4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

/* Histogram bucket upper bounds in seconds (shared by TTFT and per-token time). */
static const double k_bounds[12] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10 };

void metrics_request(hearth_server *s, int status) {
    int cls = status / 100;
    if (cls < 1 || cls > 5) cls = 5;
    pthread_mutex_lock(&s->mmu);
    s->req_by_class[cls]++;
    pthread_mutex_unlock(&s->mmu);
}

void metrics_tokens(hearth_server *s, int64_t prompt, int64_t generated) {
    pthread_mutex_lock(&s->mmu);
    s->prompt_tokens += prompt > 0 ? prompt : 0;
    s->gen_tokens += generated > 0 ? generated : 0;
    pthread_mutex_unlock(&s->mmu);
}

static void observe(uint64_t *buckets, double *sum, uint64_t *count, double v) {
    for (int i = 0; i < 12; i++)
        if (v <= k_bounds[i]) buckets[i]++;
    *sum += v;
    (*count)++;
}

void metrics_ttft(hearth_server *s, double seconds) {
    pthread_mutex_lock(&s->mmu);
    observe(s->ttft_buckets, &s->ttft_sum, &s->ttft_count, seconds);
    pthread_mutex_unlock(&s->mmu);
}

void metrics_token_time(hearth_server *s, double seconds) {
    pthread_mutex_lock(&s->mmu);
    observe(s->tok_buckets, &s->tok_sum, &s->tok_count, seconds);
    pthread_mutex_unlock(&s->mmu);
}

static size_t histogram(char *p, size_t cap, const char *name, const char *help, const uint64_t *b, double sum, uint64_t count) {
    size_t n = (size_t)snprintf(p, cap, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < 12 && n < cap; i++) n += (size_t)snprintf(p + n, cap - n, "%s_bucket{le=\"%g\"} %llu\n", name, k_bounds[i], (unsigned long long)b[i]);
    if (n < cap) n += (size_t)snprintf(p + n, cap - n, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                                       (unsigned long long)count, name, sum, name, (unsigned long long)count);
    return n < cap ? n : cap;
}

char *metrics_render(hearth_server *s) {
    size_t cap = 8192, n = 0;
    char *p = malloc(cap);
    if (!p) return NULL;
    int64_t kv_used, kv_total;
    int loaded, busy, queued;
    sched_stats(s->sched, &kv_used, &kv_total, &loaded, &busy, &queued);
    pthread_mutex_lock(&s->mmu);
    n += (size_t)snprintf(p + n, cap - n, "# HELP hearth_requests_total HTTP requests by status class.\n# TYPE hearth_requests_total counter\n");
    for (int c = 1; c <= 5; c++) n += (size_t)snprintf(p + n, cap - n, "hearth_requests_total{code=\"%dxx\"} %llu\n", c, (unsigned long long)s->req_by_class[c]);
    n += (size_t)snprintf(p + n, cap - n,
                          "# HELP hearth_prompt_tokens_total Prompt tokens evaluated (cache hits excluded).\n# TYPE hearth_prompt_tokens_total counter\nhearth_prompt_tokens_total %lld\n"
                          "# HELP hearth_generated_tokens_total Tokens generated.\n# TYPE hearth_generated_tokens_total counter\nhearth_generated_tokens_total %lld\n",
                          (long long)s->prompt_tokens, (long long)s->gen_tokens);
    n += histogram(p + n, cap - n, "hearth_time_to_first_token_seconds", "Time from request to first generated token.", s->ttft_buckets, s->ttft_sum, s->ttft_count);
    n += histogram(p + n, cap - n, "hearth_time_per_token_seconds", "Time between generated tokens of one request.", s->tok_buckets, s->tok_sum, s->tok_count);
    pthread_mutex_unlock(&s->mmu);
    n += (size_t)snprintf(p + n, cap - n,
                          "# HELP hearth_queue_length Requests waiting for a slot.\n# TYPE hearth_queue_length gauge\nhearth_queue_length %d\n"
                          "# HELP hearth_busy_slots Sequences decoding now.\n# TYPE hearth_busy_slots gauge\nhearth_busy_slots %d\n"
                          "# HELP hearth_kv_cache_used_cells KV cache cells in use.\n# TYPE hearth_kv_cache_used_cells gauge\nhearth_kv_cache_used_cells %lld\n"
                          "# HELP hearth_kv_cache_total_cells KV cache cells of loaded models.\n# TYPE hearth_kv_cache_total_cells gauge\nhearth_kv_cache_total_cells %lld\n"
                          "# HELP hearth_loaded_models Models in memory.\n# TYPE hearth_loaded_models gauge\nhearth_loaded_models %d\n",
                          queued, busy, (long long)kv_used, (long long)kv_total, loaded);
    if (n >= cap) p[cap - 1] = '\0';
    return p;
}
