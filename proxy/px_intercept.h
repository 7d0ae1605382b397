/*
 * px_intercept: what pgshim does with a recognised legacy call, per tenant and function.
 *
 * Three parts with one owner each:
 *  - flags (flags.c): the mode and cache TTL of every (tenant, function), built from the ini's
 *    [intercept] defaults and [tenant.NAME] sections, changed at run time by the admin console's
 *    SET INTERCEPT and swapped whole by RELOAD/SIGHUP. The event loop is single-threaded, so a
 *    statement reads the flags once when it is dispatched and sees either the old set or the new
 *    one, never a mix.
 *  - stats (flags.c): counters and a latency histogram per (tenant, function), and the
 *    "candidates" seen on the pass-through path, for SHOW INTERCEPTS / SHOW INTERCEPT CANDIDATES.
 *  - the engine (intercept.c, native.c): recognition on the client path, eligibility, native
 *    execution on pgshim's own libpq connections, shadow comparison, cache use.
 *
 * Tenant = the database name exactly as the client sent it in its StartupMessage.
 */
#ifndef PGSHIM_PROXY_PX_INTERCEPT_H
#define PGSHIM_PROXY_PX_INTERCEPT_H

#include <stdbool.h>
#include <stdint.h>

#include "rw.h"

#define PX_MODE_MAP(XX)      \
    XX(OFF, "off")           \
    XX(NATIVE, "native")     \
    XX(CACHE, "cache")       \
    XX(SHADOW, "shadow")

typedef enum px_mode {
#define PX__MODE_ENUM(name, text) PX_MODE_##name,
    PX_MODE_MAP(PX__MODE_ENUM)
#undef PX__MODE_ENUM
    PX_MODE__COUNT
} px_mode_t;

const char *px_mode_name(px_mode_t m);
/* Mode by exact lower-case name, -1 when unknown. */
int px_mode_lookup(const char *name);

/* ------------------------------------------------------------------ flags */

/* Default TTLs (seconds) when the ini says nothing: jobs are time-dependent, so short. */
#define PX_TTL_DEFAULT 300u
#define PX_TTL_JOBS_DEFAULT 60u

/* Mode and TTL that apply to (tenant, fn) right now. An unknown tenant gets the [intercept]
   defaults. Never fails. */
px_mode_t px_flags_mode(const char *tenant, rw_fn_t fn);
uint32_t px_flags_ttl(const char *tenant, rw_fn_t fn);
/* True when some function of tenant is in `mode` right now (one tenant lookup). */
bool px_flags_any(const char *tenant, px_mode_t mode);

/* Run-time change from the admin console: `what` is a function name, a family name or "all";
   tenant "*" means the [intercept] defaults. Returns 0, or -1 with *err set to a static message
   (unknown function/family/mode). Logged by the caller. */
int px_flags_set(const char *tenant, const char *what, px_mode_t mode, const char **err);

/* ------------------------------------------------------------------ stats */

#define PX_LAT_BUCKETS 24   /* log2 buckets of microseconds: [0,1) [1,2) [2,4) ... */

typedef struct px_icpt_stats {
    uint64_t calls;                  /* recognised calls of this (tenant, fn) */
    uint64_t native;                 /* answered natively */
    uint64_t cache_hits, cache_misses, cache_stores, cache_errors;
    uint64_t passed;                 /* passed through (mode off or ineligible) */
    uint64_t fallbacks;              /* native attempted, then passed through */
    uint64_t by_reason[RW_REASON__COUNT];
    uint64_t shadow_compared, shadow_mismatches;
    uint64_t shadow_skipped;         /* shadow calls not compared: another comparison of the same
                                        client was still running, or it could not be started */
    uint64_t lat_hist[PX_LAT_BUCKETS];  /* latency of answers pgshim produced itself */
    uint64_t mode_changed_at;        /* unix ms of the last mode change */
    char mode_changed_how[32];       /* "config", "reload", "SET INTERCEPT" */
} px_icpt_stats_t;

/* Counters of (tenant, fn), created on first use and kept for the process lifetime. Never NULL:
   on allocation failure a shared scratch entry is returned (its counts are not shown). */
px_icpt_stats_t *px_stats_get(const char *tenant, rw_fn_t fn);
void px_stats_latency(px_icpt_stats_t *st, uint64_t usec);
/* Percentile (0..100) from the histogram in microseconds (upper bucket bound), 0 if empty. */
uint64_t px_stats_percentile(const px_icpt_stats_t *st, double pct);

/* A legacy call seen on the pass-through path (mode off, or not eligible): counted per tenant
   and function for SHOW INTERCEPT CANDIDATES, with whether it would have been eligible. */
void px_stats_candidate(const char *tenant, rw_fn_t fn, bool eligible, rw_reason_t reason);

/* ------------------------------------------------- iteration (admin console) */

/* Per (tenant, function) tally of legacy calls seen on the pass-through path. */
typedef struct px_candidate {
    uint64_t seen;            /* calls passed through */
    uint64_t eligible;        /* of which would have been eligible for a native answer */
    rw_reason_t last_reason;  /* why the last ineligible one was not (RW_REASON_NONE if none) */
} px_candidate_t;

/* Calls cb once per known tenant: first those with a [tenant.NAME] section or a SET INTERCEPT,
   in configuration order, then tenants seen only in stats or candidates, in first-seen order.
   The [intercept] defaults ("*") are not included. cb must not change flags or stats. */
typedef void (*px_tenant_cb)(const char *tenant, void *arg);
void px_flags_foreach_tenant(px_tenant_cb cb, void *arg);
/* True when tenant has its own [tenant.NAME] section or SET INTERCEPT. */
bool px_flags_has_tenant(const char *tenant);
/* When (unix ms) and how ("config", "reload", "SET INTERCEPT") the mode of (tenant, fn) last
   changed; tenant "*" = the defaults. *how is static or owned by the flags (valid until the next
   flag change). */
void px_flags_changed(const char *tenant, rw_fn_t fn, uint64_t *at_ms, const char **how);
/* Counters of (tenant, fn) without creating them: NULL when none were recorded. Borrowed,
   valid for the process lifetime. */
const px_icpt_stats_t *px_stats_find(const char *tenant, rw_fn_t fn);
/* Candidate tally of (tenant, fn), NULL when none was recorded. Borrowed, process lifetime. */
const px_candidate_t *px_stats_find_candidate(const char *tenant, rw_fn_t fn);

#endif
