/*
 * dbstats: per-database traffic counters (px_dbstats.h). The hooks that feed them live where the
 * events happen (client.c, server.c); this file keeps the entries and the stats_period averages.
 * The event loop is single-threaded, so plain integers suffice.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "px_config.h"
#include "px_dbstats.h"
#include "px_log.h"

static px_dbstats_t *g_first, *g_last;
static px_dbstats_t g_scratch;
static uint64_t g_period_start_us;

uint64_t px_dbstats_now_us(void) { return uv_hrtime() / 1000u; }

px_dbstats_t *px_dbstats_get(const char *dbname)
{
    for (px_dbstats_t *d = g_first; d != NULL; d = d->next)
        if (strcmp(d->dbname, dbname) == 0)
            return d;
    px_dbstats_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return &g_scratch;
    d->dbname = strdup(dbname);
    if (d->dbname == NULL) {
        free(d);
        return &g_scratch;
    }
    if (g_last != NULL)
        g_last->next = d;
    else
        g_first = d;
    g_last = d;
    return d;
}

px_dbstats_t *px_dbstats_first(void) { return g_first; }

/* Averages over [at_last_period, total] for a period of dur_us. */
static void compute_avg(px_dbstats_t *d, uint64_t dur_us)
{
    const px_dbstats_vals_t *cur = &d->total, *old = &d->at_last_period;
    px_dbstats_vals_t *avg = &d->avg;
    uint64_t queries = cur->query_count - old->query_count;
    uint64_t xacts = cur->xact_count - old->xact_count;
    memset(avg, 0, sizeof(*avg));
    if (dur_us == 0)
        return;
    /* Rates per second; the products stay far below 2^64 for any realistic traffic. */
    avg->query_count = queries * 1000000u / dur_us;
    avg->xact_count = xacts * 1000000u / dur_us;
    avg->received = (cur->received - old->received) * 1000000u / dur_us;
    avg->sent = (cur->sent - old->sent) * 1000000u / dur_us;
    avg->wait_time = (cur->wait_time - old->wait_time) * 1000000u / dur_us;
    if (queries > 0)
        avg->query_time = (cur->query_time - old->query_time) / queries;
    if (xacts > 0)
        avg->xact_time = (cur->xact_time - old->xact_time) / xacts;
}

void px_dbstats_tick(void)
{
    uint64_t now = px_dbstats_now_us();
    if (g_period_start_us == 0) {
        g_period_start_us = now;
        return;
    }
    uint64_t period = (uint64_t)(px_cfg != NULL && px_cfg->stats_period > 0 ? px_cfg->stats_period : 60);
    uint64_t dur = now - g_period_start_us;
    if (dur < period * 1000000u)
        return;
    for (px_dbstats_t *d = g_first; d != NULL; d = d->next) {
        compute_avg(d, dur);
        d->at_last_period = d->total;
        const px_dbstats_vals_t *a = &d->avg;
        /* One line per database with traffic in the period, as PgBouncer's log_stats. */
        if (a->query_count > 0 || a->received > 0)
            px_log_info("stats: %s: %llu xacts/s, %llu queries/s, in %llu B/s, out %llu B/s, "
                        "xact %llu us, query %llu us, wait %llu us", d->dbname,
                        (unsigned long long)a->xact_count, (unsigned long long)a->query_count,
                        (unsigned long long)a->received, (unsigned long long)a->sent,
                        (unsigned long long)a->xact_time, (unsigned long long)a->query_time,
                        (unsigned long long)a->wait_time);
    }
    g_period_start_us = now;
}

void px_dbstats_free_all(void)
{
    px_dbstats_t *d = g_first;
    while (d != NULL) {
        px_dbstats_t *next = d->next;
        free(d->dbname);
        free(d);
        d = next;
    }
    g_first = g_last = NULL;
}
