/*
 * intercept.c: the interception engine on the client path. client.c asks it, at every message
 * boundary of a logged-in client, whether the message at the front of the client's input is a
 * legacy call pgshim answers itself; everything else continues down the normal forwarding path
 * unchanged.
 *
 * Simple protocol: a whole Query message of at most PX_ICPT_MAX_MSG bytes whose SQL passes
 * rw_prefilter and rw_recognize_query is a recognised call. Its tenant mode (px_flags_mode) and
 * the eligibility rules of ARCHITECTURE.md decide: native runs rw_exec on a native connection
 * (native.c) and replies RowDescription + body + ReadyForQuery('I'); off, ineligible or any
 * native failure passes the untouched Query bytes through the normal path; shadow passes it
 * through and also runs the native version to compare with PostgreSQL's reply.
 * Cache mode (cachemode.c) first asks Redis, with the call waiting at the front like a native
 * call: a hit replies the stored RowDescription + body (+ ParseComplete/BindComplete/... for a
 * batch, built as for native answers); a miss runs it natively and stores the answer; any cache
 * failure runs it natively. Every Query/Parse/Bind is also shown to cachemode.c, which remembers
 * the legacy tables it writes and bumps their generations when the transaction ends.
 *
 * Ordering invariant: while a native call is running, the Query stays at the front of the
 * client's input buffer (the hook returns 0, so nothing behind it is consumed) and reading is
 * paused; when the call ends the hook either drops the Query (answered) or lets it through
 * (fallback). So replies always come back in the order the client sent its messages.
 *
 * Eligibility (rule 2, 3): no linked server in a transaction or with replies pending; the tracked
 * parameters TimeZone, DateStyle, IntervalStyle, client_encoding and standard_conforming_strings
 * equal rw_native_settings; and the client never issued a statement naming a setting pgshim cannot
 * see (search_path, client_min_messages, lc_messages, extra_float_digits) since its last
 * DISCARD ALL / RESET ALL. Startup `options` never reach the server through pgshim (it is in
 * ignore_startup_parameters or the login is refused), so it cannot change them either.
 *
 * Extended protocol: a Sync-delimited batch [Parse] Bind [Describe] Execute Sync of one recognised
 * call with text results (Bind of the unnamed statement just parsed, or of a remembered named
 * statement) is answered whole; any other batch goes through whole (pass_batch, until its Sync).
 * A named Parse always goes through, so PostgreSQL knows every name in both pool modes, and the
 * name is remembered (with its template when it is a legacy call); Close, DEALLOCATE and DISCARD
 * ALL forget names, and a Parse reusing a live name keeps the old one, as PostgreSQL does.
 *
 * With native_butree_ttl > 0 every Query and Parse is also checked for writes to bt/typeassist
 * (rw_writes_tables), which drop the in-memory BU tree (native.c).
 *
 * Per-client state lives in a small hash table keyed by the client pointer, created on the first
 * prefilter hit, settings statement or named Parse, so px_client_t stays as it is and
 * pass-through Queries pay a hash lookup, one scan for setting names and rw_prefilter.
 */
#include "px_cache.h"
#include "px_intercept.h"
#include "px_log.h"
#include "px_native.h"
#include "rw_writes.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Largest Query buffered whole for recognition. Below PGW_LIMIT_SMALL so an idle client (whose
   reading pauses above that many buffered bytes) always delivers a whole candidate. */
#define PX_ICPT_MAX_MSG 8192u

#define ICPT_HASH_SIZE 1024

typedef struct px_icpt_client {
    struct px_icpt_client *next;   /* hash chain */
    px_client_t *c;
    bool busy;                     /* a native call for the front message is running */
    bool skip_front;               /* the front message was answered: drop it */
    bool pass_front;               /* the front message goes through the normal path */
    bool tainted;                  /* an untracked setting may differ */
    uint32_t front_len;
    px_native_job_t *job;
    uint64_t t0;                   /* uv_hrtime() when the call was recognised */
    rw_fn_t fn;
    struct px_shadow *shadow;      /* shadow comparison in flight */
    bool pass_batch;               /* the extended batch at the front goes through whole */
    /* extended-protocol batch being answered: what the client asked to be described */
    bool ext;                      /* the running call came from a Parse/Bind batch */
    char ext_describe;             /* 0, 'S' or 'P' */
    uint32_t ext_param_oids[RW_MAX_ARGS];
    uint16_t ext_nparams;
    bool ext_parse;                /* the batch began with a Parse (send ParseComplete) */
    struct {
        char *name;
        rw_template_t *t;
    } *stmts;                      /* named statements of legacy calls */
    size_t nstmts, capstmts;
    /* cache mode (cachemode.c): the lookup in flight, then the key a native answer is stored
       under; the call is kept here while the lookup runs */
    px_cache_call_t *cc;
    rw_call_t ccall;
    uint32_t clen;                 /* bytes of the front message(s) the call answers */
    /* in-memory copies on: tables written by any named statement this client prepared; every
       later Bind of a named statement counts as a write of them (message_writes) */
    rw_tableset_t named_writes;
    /* shadow mode on for the tenant: legacy tables written in the client's current transaction
       (reset by its first statement while its server is idle or absent) */
    rw_tableset_t txn_writes;
} px_icpt_client_t;

static px_icpt_client_t *g_icpt_hash[ICPT_HASH_SIZE];

static void shadow_free(struct px_shadow *sh);
static void stmt_forget_all(struct px_icpt_client *ic);

static size_t icpt_slot(const px_client_t *c)
{
    uintptr_t p = (uintptr_t)c;
    return (size_t)((p >> 4) ^ (p >> 14)) % ICPT_HASH_SIZE;
}

static px_icpt_client_t *icpt_find(const px_client_t *c)
{
    for (px_icpt_client_t *ic = g_icpt_hash[icpt_slot(c)]; ic; ic = ic->next)
        if (ic->c == c)
            return ic;
    return NULL;
}

static px_icpt_client_t *icpt_get(px_client_t *c)
{
    px_icpt_client_t *ic = icpt_find(c);
    if (ic != NULL)
        return ic;
    ic = calloc(1, sizeof(*ic));
    if (ic == NULL)
        return NULL;
    ic->c = c;
    size_t slot = icpt_slot(c);
    ic->next = g_icpt_hash[slot];
    g_icpt_hash[slot] = ic;
    return ic;
}

void px_intercept_client_gone(px_client_t *c)
{
    px_cache_client_gone(c);
    px_icpt_client_t **p = &g_icpt_hash[icpt_slot(c)];
    for (; *p; p = &(*p)->next) {
        if ((*p)->c == c) {
            px_icpt_client_t *ic = *p;
            *p = ic->next;
            px_native_abandon(ic->job);
            px_native_client_gone(c);
            px_cache_call_free(ic->cc);
            rw_call_clear(&ic->ccall);
            shadow_free(ic->shadow);
            stmt_forget_all(ic);
            free(ic->stmts);
            free(ic);
            return;
        }
    }
}

bool px_intercept_blocks_reading(const px_client_t *c)
{
    const px_icpt_client_t *ic = icpt_find(c);
    return ic != NULL && ic->busy;
}

bool px_intercept_stop_before(const px_client_t *c, pgw_msg_t type)
{
    (void)c;
    /* The hook must see each Query at the front of the input, so forwarding stops before one. */
    return type == PGW_MSG_QUERY || type == PGW_MSG_PARSE || type == PGW_MSG_BIND ||
           type == PGW_MSG_CLOSE;
}

/* ---------------------------------------------------------------------------------------------
 * Settings pgshim cannot see
 * ------------------------------------------------------------------------------------------- */

static bool has_word_ci(const char *s, size_t len, const char *w)
{
    size_t wl = strlen(w);
    if (len < wl)
        return false;
    for (size_t i = 0; i + wl <= len; i++)
        if (tolower((unsigned char)s[i]) == w[0] && strncasecmp(s + i, w, wl) == 0)
            return true;
    return false;
}

/* 1: the statement may change a setting the native path fixes but pgshim does not track;
   -1: it resets every setting (DISCARD ALL, RESET ALL); 0: neither. One pass over the text: most
   bytes fail the first-letter test, so pass-through statements pay about one table lookup per
   byte. */
static int settings_effect(const char *sql, size_t len)
{
    static const struct {
        const char *w;
        size_t n;
        int effect;
    } words[] = {
        {"search_path", 11, 1},  {"client_min_messages", 19, 1}, {"lc_messages", 11, 1},
        {"extra_float_digits", 18, 1}, {"session_authorization", 21, 1}, {"set role", 8, 1},
        {"discard all", 11, -1}, {"reset all", 9, -1},
    };
    int found = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = (char)tolower((unsigned char)sql[i]);
        if (ch != 's' && ch != 'c' && ch != 'l' && ch != 'e' && ch != 'd' && ch != 'r')
            continue;
        for (size_t k = 0; k < sizeof(words) / sizeof(words[0]); k++) {
            if (words[k].w[0] == ch && len - i >= words[k].n &&
                strncasecmp(sql + i, words[k].w, words[k].n) == 0) {
                if (words[k].effect > 0)
                    return 1;
                found = -1;
            }
        }
    }
    return found;
}

/* ---------------------------------------------------------------------------------------------
 * Eligibility
 * ------------------------------------------------------------------------------------------- */

static const char *native_setting(const char *name)
{
    for (int i = 0; rw_native_settings[i][0] != NULL; i++)
        if (strcasecmp(rw_native_settings[i][0], name) == 0)
            return rw_native_settings[i][1];
    return NULL;
}

static rw_reason_t eligibility(const px_client_t *c, const px_icpt_client_t *ic)
{
    const px_server_t *s = c->server;
    if (s != NULL && s->last_status != (uint8_t)'I')
        return RW_REASON_TRANSACTION;
    /* Replies to earlier messages still to come: answering now would overtake them. */
    if (s != NULL && (s->pending != 0 || s->unsynced || s->copy_in || s->setting_vars ||
                      s->msg_left != 0 || s->state != PX_SV_ACTIVE))
        return RW_REASON_BATCH;
    static const px_var_t checked[] = {PX_VAR_TIMEZONE, PX_VAR_DATESTYLE, PX_VAR_INTERVALSTYLE,
                                       PX_VAR_CLIENT_ENCODING, PX_VAR_STANDARD_CONFORMING_STRINGS};
    for (size_t i = 0; i < sizeof(checked) / sizeof(checked[0]); i++) {
        const char *want = native_setting(px_var_name(checked[i]));
        const char *have = c->vars.v[checked[i]];
        if (want != NULL && (have == NULL || strcmp(have, want) != 0))
            return RW_REASON_SETTINGS;
    }
    if (ic != NULL && ic->tainted)
        return RW_REASON_SETTINGS;
    return RW_REASON_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------------------------- */

/* Also used for cache hits (stored describe + body). */
static bool send_simple_raw(px_client_t *c, const uint8_t *d, size_t dlen, const uint8_t *body,
                            size_t blen)
{
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_buf_append(&b, d, dlen);
    pgw_buf_append(&b, body, blen);
    pgw_build_ready(&b, (uint8_t)'I');
    bool ok = !pgw_buf_failed(&b) && px_io_write(&c->io, b.data, b.len) == 0;
    pgw_buf_free(&b);
    return ok;
}

/* Replies to Parse, Bind, [Describe], Execute, Sync. */
static bool send_ext_raw(px_client_t *c, const px_icpt_client_t *ic, const uint8_t *d,
                         size_t dlen, const uint8_t *body, size_t blen)
{
    pgw_buf_t b;
    pgw_buf_init(&b);
    if (ic->ext_parse)
        pgw_build_parse_complete(&b);
    pgw_build_bind_complete(&b);
    if (ic->ext_describe == 'S')
        pgw_build_param_description(&b, ic->ext_param_oids, ic->ext_nparams);
    if (ic->ext_describe != 0) {
        if (dlen > 0)
            pgw_buf_append(&b, d, dlen);
        else
            pgw_build_no_data(&b);
    }
    pgw_buf_append(&b, body, blen);
    pgw_build_ready(&b, (uint8_t)'I');
    bool ok = !pgw_buf_failed(&b) && px_io_write(&c->io, b.data, b.len) == 0;
    pgw_buf_free(&b);
    return ok;
}

/* Sends a native answer in the client's protocol. One that ends in an ErrorResponse is never
   sent: PostgreSQL's own error carries context and source-location fields the native side cannot
   know, so the call passes through (RW_REASON_LEGACY_ERROR; shadow mode still compares the
   native prediction). */
static bool send_native_reply(px_client_t *c, const px_icpt_client_t *ic, rw_exec_t *ex)
{
    if (rw_exec_failed(ex))
        return false;
    const pgw_buf_t *d = rw_exec_describe(ex), *body = rw_exec_body(ex);
    return ic->ext ? send_ext_raw(c, ic, d->data, d->len, body->data, body->len)
                   : send_simple_raw(c, d->data, d->len, body->data, body->len);
}

/* Cache mode: the native answer that was just sent is stored (cachemode.c decides whether it
   still may be); the lookup handle is released either way. */
static void cache_after_native(px_icpt_client_t *ic, rw_exec_t *ex, bool sent)
{
    if (ic->cc == NULL)
        return;
    if (sent) {
        const pgw_buf_t *d = rw_exec_describe(ex), *body = rw_exec_body(ex);
        px_cache_call_store(ic->cc, d->data, d->len, body->data, body->len);
    }
    px_cache_call_free(ic->cc);
    ic->cc = NULL;
}

static uint64_t usec_since(uint64_t t0) { return (uv_hrtime() - t0) / 1000; }

static void count_pass(px_icpt_stats_t *st, rw_reason_t reason)
{
    st->passed++;
    if ((unsigned)reason < RW_REASON__COUNT)
        st->by_reason[reason]++;
}

static void count_fallback(px_icpt_stats_t *st, rw_reason_t reason)
{
    st->fallbacks++;
    count_pass(st, reason);
}

/* A native call for the client's front Query ended (from the native connection's poll). */
static void simple_done_cb(void *arg, rw_exec_t *ex, rw_exec_status_t st, rw_reason_t reason)
{
    px_icpt_client_t *ic = arg;
    px_client_t *c = ic->c;
    ic->job = NULL;
    ic->busy = false;
    px_icpt_stats_t *stats = px_stats_get(c->dbname, ic->fn);
    bool sent = st == RW_EXEC_DONE && send_native_reply(c, ic, ex);
    cache_after_native(ic, ex, sent);
    if (sent) {
        stats->native++;
        uint64_t us = usec_since(ic->t0);
        px_stats_latency(stats, us);
        px_log_debug("C-%llu: %s answered natively in %llu us", (unsigned long long)c->id,
                     rw_fn_name(ic->fn), (unsigned long long)us);
        ic->skip_front = true;
    } else {
        if (st == RW_EXEC_DONE)
            reason = rw_exec_failed(ex) ? RW_REASON_LEGACY_ERROR : RW_REASON_NOMEM;
        count_fallback(stats, reason);
        px_log_debug("C-%llu: %s falls back: %s", (unsigned long long)c->id, rw_fn_name(ic->fn),
                     rw_reason_name(reason));
        ic->pass_front = true;
        if (ic->ext)
            ic->pass_batch = true;
    }
    px_client_resume(c);
}

/* ---------------------------------------------------------------------------------------------
 * The hook
 * ------------------------------------------------------------------------------------------- */

/* The front message goes down the normal path; remembered until client.c starts forwarding it
   (px_intercept_note_forward), because the normal path may first wait for a server and then
   present the same message to the hook again. */
static ssize_t pass(px_client_t *c, px_icpt_client_t *ic)
{
    (void)c;
    if (ic != NULL)
        ic->pass_front = true;
    return PX_ICPT_CONTINUE;
}

void px_intercept_note_forward(px_client_t *c)
{
    px_icpt_client_t *ic = icpt_find(c);
    if (ic != NULL)
        ic->pass_front = false;
}

/* Settings statements are noticed in every Query and Parse that reaches the hook. */
static px_icpt_client_t *note_settings(px_client_t *c, px_icpt_client_t *ic, const char *sql,
                                       size_t len)
{
    int eff = settings_effect(sql, len);
    if (eff < 0 || (ic != NULL && ic->nstmts > 0 && has_word_ci(sql, len, "deallocate")))
        stmt_forget_all(ic);  /* DISCARD ALL drops prepared statements too */
    if (eff == 0)
        return ic;
    if (ic == NULL)
        ic = icpt_get(c);
    if (ic != NULL)
        ic->tainted = eff > 0;
    return ic;
}

static ssize_t run_native(px_client_t *c, px_icpt_client_t *ic, px_icpt_stats_t *st,
                          rw_call_t *call, uint32_t len, uint64_t t0);

/* Cache mode: the lookup of the front call ended. A hit is answered from the stored messages;
   a miss runs the call natively (and stores the answer); an error runs it natively, no store. */
static void cache_lookup_done(void *arg, int status, const cache_result_t *res)
{
    px_icpt_client_t *ic = arg;
    px_client_t *c = ic->c;
    px_icpt_stats_t *st = px_stats_get(c->dbname, ic->fn);
    ic->busy = false;
    if (status == CACHE_HIT && res != NULL && !res->failed) {  /* errors pass through */
        bool sent = ic->ext ? send_ext_raw(c, ic, res->describe, res->describe_len, res->body,
                                           res->body_len)
                            : send_simple_raw(c, res->describe, res->describe_len, res->body,
                                              res->body_len);
        if (sent) {
            px_cache_call_free(ic->cc);
            ic->cc = NULL;
            rw_call_clear(&ic->ccall);
            uint64_t us = usec_since(ic->t0);
            px_stats_latency(st, us);
            px_log_debug("C-%llu: %s answered from the cache in %llu us",
                         (unsigned long long)c->id, rw_fn_name(ic->fn), (unsigned long long)us);
            ic->skip_front = true;
            px_client_resume(c);
            return;
        }
    }
    if (status != CACHE_MISS) {
        px_cache_call_free(ic->cc);  /* nothing to store under */
        ic->cc = NULL;
    }
    rw_call_t call = ic->ccall;
    memset(&ic->ccall, 0, sizeof(ic->ccall));
    ssize_t r = run_native(c, ic, st, &call, ic->clen, ic->t0);
    if (r == 0)
        return;  /* the native job runs; simple_done_cb resumes the client */
    if (r > 0) {
        ic->skip_front = true;
    } else {
        ic->pass_front = true;
        if (ic->ext)
            ic->pass_batch = true;
    }
    px_client_resume(c);
}

/* A recognised call at the front (a Query, or a batch of `len` bytes through its Sync): decides
   by mode and eligibility, then answers it natively, shadows it, or passes it through. Takes
   ownership of the call's contents. */
static ssize_t dispatch_call(px_client_t *c, px_icpt_client_t *ic, rw_call_t *call,
                             uint32_t len, uint64_t t0, const pgw_frame_t *query)
{
    rw_fn_t fn = call->fn;
    px_icpt_stats_t *st = px_stats_get(c->dbname, fn);
    st->calls++;
    px_mode_t mode = px_flags_mode(c->dbname, fn);
    rw_reason_t elig = eligibility(c, ic);
    if (mode == PX_MODE_OFF || elig != RW_REASON_NONE || (mode == PX_MODE_SHADOW && query == NULL)) {
        rw_reason_t why = elig != RW_REASON_NONE ? elig : mode == PX_MODE_OFF ? RW_REASON_MODE_OFF
                                                                              : RW_REASON_UNSUPPORTED;
        rw_call_clear(call);
        count_pass(st, why);
        px_stats_candidate(c->dbname, fn, elig == RW_REASON_NONE, why);
        px_log_debug("C-%llu: %s passed through: %s", (unsigned long long)c->id, rw_fn_name(fn),
                     rw_reason_name(why));
        return -1;
    }
    if (mode == PX_MODE_SHADOW) {
        px_intercept__shadow_start(c, call, fn, query);
        rw_call_clear(call);
        return -1;
    }
    ic->fn = fn;
    ic->t0 = t0;
    if (mode == PX_MODE_CACHE) {
        /* The call waits in ic while Redis is asked; any cache failure answers natively now. */
        int cst = 0;
        rw_call_clear(&ic->ccall);
        ic->ccall = *call;
        memset(call, 0, sizeof(*call));
        ic->cc = px_cache_call_start(c->dbname, &ic->ccall, cache_lookup_done, ic, &cst);
        if (ic->cc != NULL) {
            ic->clen = len;
            ic->front_len = len;
            ic->busy = true;
            px_client_update_reading(c);
            return 0;
        }
        *call = ic->ccall;
        memset(&ic->ccall, 0, sizeof(ic->ccall));
    }
    return run_native(c, ic, st, call, len, t0);
}

/* Runs `call` natively (takes its contents) and answers it: returns len (answered at once), 0
   (a native job runs; simple_done_cb finishes) or -1 (pass through; counted). */
static ssize_t run_native(px_client_t *c, px_icpt_client_t *ic, px_icpt_stats_t *st,
                          rw_call_t *call, uint32_t len, uint64_t t0)
{
    rw_fn_t fn = call->fn;
    rw_exec_t *ex = rw_exec_new(call);
    rw_call_clear(call);
    if (ex == NULL) {
        cache_after_native(ic, NULL, false);
        count_fallback(st, RW_REASON_NOMEM);
        return -1;
    }
    px_native_job_t *job = NULL;
    rw_exec_status_t xs = RW_EXEC_FALLBACK;
    rw_reason_t reason = RW_REASON_NONE;
    int rc = px_native_run(c->pool, fn, ex, simple_done_cb, ic, &job, &xs, &reason);
    if (rc < 0) {
        cache_after_native(ic, NULL, false);
        count_fallback(st, reason);
        return -1;
    }
    if (rc == 1) {
        bool ok = xs == RW_EXEC_DONE && send_native_reply(c, ic, ex);
        cache_after_native(ic, ex, ok);
        if (!ok && xs == RW_EXEC_DONE)
            reason = rw_exec_failed(ex) ? RW_REASON_LEGACY_ERROR : RW_REASON_NOMEM;
        rw_exec_free(ex);
        if (!ok) {
            count_fallback(st, reason);
            px_log_debug("C-%llu: %s falls back: %s", (unsigned long long)c->id, rw_fn_name(fn),
                         rw_reason_name(reason));
            return -1;
        }
        st->native++;
        px_stats_latency(st, usec_since(t0));
        px_log_debug("C-%llu: %s answered natively without a query", (unsigned long long)c->id,
                     rw_fn_name(fn));
        return (ssize_t)len;
    }
    ic->job = job;
    ic->busy = true;
    ic->front_len = len;
    px_client_update_reading(c);
    return 0;
}

static ssize_t handle_query(px_client_t *c, px_icpt_client_t *ic, const pgw_frame_t *f)
{
    pgw_query_t q;
    if (pgw_decode_query(f, &q) != 0)
        return PX_ICPT_CONTINUE;  /* the server will complain about it */
    ic = note_settings(c, ic, q.sql.ptr, q.sql.len);
    if (!rw_prefilter(q.sql.ptr, q.sql.len))
        return pass(c, ic);
    uint64_t t0 = uv_hrtime();
    rw_call_t call;
    memset(&call, 0, sizeof(call));
    rw_reason_t reason = RW_REASON_NONE;
    int rc = rw_recognize_query(q.sql.ptr, &call, &reason);
    if (ic == NULL)
        ic = icpt_get(c);
    if (rc <= 0 || ic == NULL) {
        rw_call_clear(&call);
        return pass(c, ic);
    }
    ic->ext = false;
    ssize_t r = dispatch_call(c, ic, &call, f->total_len, t0, f);
    return r < 0 ? pass(c, ic) : r;
}

/* ---------------------------------------------------------------------------------------------
 * Named statements of legacy calls: a named Parse always goes through to the server (so the
 * server knows the name in both pool modes and every later pass-through works), and pgshim keeps
 * name -> template so that later Bind/Execute batches for that name can be answered natively.
 * Close(S), DEALLOCATE and DISCARD ALL forget names.
 * ------------------------------------------------------------------------------------------- */

/* Index of a known statement name, or -1. Every named Parse is remembered (t NULL when it is not
   a legacy call), so a later Parse reusing a live name is recognised as the error PostgreSQL
   makes of it. */
static long stmt_index(const px_icpt_client_t *ic, const char *name, size_t len)
{
    for (size_t i = 0; ic != NULL && i < ic->nstmts; i++)
        if (strlen(ic->stmts[i].name) == len && memcmp(ic->stmts[i].name, name, len) == 0)
            return (long)i;
    return -1;
}

/* Template of a named statement that is a legacy call; NULL otherwise. */
static rw_template_t *stmt_find(const px_icpt_client_t *ic, const char *name, size_t len)
{
    long i = stmt_index(ic, name, len);
    return i >= 0 ? ic->stmts[i].t : NULL;
}

static void stmt_forget(px_icpt_client_t *ic, const char *name, size_t len)
{
    for (size_t i = 0; ic != NULL && i < ic->nstmts; i++) {
        if (strlen(ic->stmts[i].name) == len && memcmp(ic->stmts[i].name, name, len) == 0) {
            free(ic->stmts[i].name);
            if (ic->stmts[i].t != NULL)
                rw_template_free(ic->stmts[i].t);
            ic->stmts[i] = ic->stmts[--ic->nstmts];
            return;
        }
    }
}

static void stmt_forget_all(px_icpt_client_t *ic)
{
    for (size_t i = 0; ic != NULL && i < ic->nstmts; i++) {
        free(ic->stmts[i].name);
        if (ic->stmts[i].t != NULL)
            rw_template_free(ic->stmts[i].t);
    }
    if (ic != NULL)
        ic->nstmts = 0;
}

/* Takes ownership of t. A name already known is kept as it is: PostgreSQL rejects a Parse that
   reuses a live statement name, so the old statement stays the one a Bind runs. */
static void stmt_remember(px_icpt_client_t *ic, const char *name, size_t len, rw_template_t *t)
{
    if (stmt_index(ic, name, len) >= 0) {
        if (t != NULL)
            rw_template_free(t);
        return;
    }
    if (ic->nstmts == ic->capstmts) {
        size_t n = ic->capstmts ? ic->capstmts * 2 : 8;
        void *p = realloc(ic->stmts, n * sizeof(*ic->stmts));
        if (p == NULL) {
            if (t != NULL)
                rw_template_free(t);
            return;
        }
        ic->stmts = p;
        ic->capstmts = n;
    }
    char *copy = strndup(name, len);
    if (copy == NULL) {
        if (t != NULL)
            rw_template_free(t);
        return;
    }
    ic->stmts[ic->nstmts].name = copy;
    ic->stmts[ic->nstmts].t = t;
    ic->nstmts++;
}

/* A named Parse goes through; remember its name (with the template when it is a legacy call). */
static void note_named_parse(px_client_t *c, px_icpt_client_t *ic, const pgw_parse_t *parse)
{
    if (parse->name.len == 0 || ic == NULL || stmt_index(ic, parse->name.ptr, parse->name.len) >= 0)
        return;
    rw_template_t *t = NULL;
    if (parse->nparams <= RW_MAX_ARGS && rw_prefilter(parse->sql.ptr, parse->sql.len)) {
        uint32_t oids[RW_MAX_ARGS];
        for (uint16_t i = 0; i < parse->nparams; i++)
            oids[i] = pgw_parse_param_oid(parse, i);
        rw_reason_t why;
        t = rw_template_from_parse(parse->sql.ptr, oids, parse->nparams, &why);
    }
    (void)c;
    stmt_remember(ic, parse->name.ptr, parse->name.len, t);
}

/* Extended protocol: the front is a Parse or a Bind. Answerable batches are exactly
   [Parse(unnamed)] Bind(unnamed portal) [Describe] Execute(all rows) Sync with text results,
   where the Bind names the unnamed statement of that Parse or a remembered named statement of a
   legacy call; anything else goes through whole. Returns 0 to wait for the rest of the batch. */
static ssize_t handle_batch(px_client_t *c, px_icpt_client_t *ic, const uint8_t *data, size_t len)
{
    pgw_frame_t fr[5];
    int n = 0;
    size_t off = 0;
    bool complete = false;
    rw_template_t *owned = NULL;
    if (data[0] == pgw_msg_byte(PGW_MSG_BIND)) {
        /* Only a Bind of a remembered legacy statement can start an answerable batch: look at
           its statement name before waiting for the rest. */
        pgw_frame_t bf;
        pgw_bind_t b0;
        size_t need;
        int rc = pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data, len, &bf, &need);
        if (rc == PGW_ENEEDMORE && len + need <= PX_ICPT_MAX_MSG)
            return 0;
        if (rc < 0 || pgw_decode_bind(&bf, &b0) != 0 || stmt_find(ic, b0.stmt.ptr, b0.stmt.len) == NULL)
            goto pass_batch;
    }
    while (n < 5) {
        size_t need;
        int rc = pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data + off, len - off, &fr[n], &need);
        if (rc == PGW_ENEEDMORE) {
            if (len + need > PX_ICPT_MAX_MSG)
                goto pass_batch;
            return 0;  /* wait for the rest of the batch (small) */
        }
        if (rc < 0)
            goto pass_batch;
        pgw_msg_t t = fr[n].type;
        pgw_msg_t prev = n > 0 ? fr[n - 1].type : (pgw_msg_t)-1;
        bool ok;
        if (n == 0)
            ok = t == PGW_MSG_PARSE || t == PGW_MSG_BIND;
        else if (prev == PGW_MSG_PARSE)
            ok = t == PGW_MSG_BIND;
        else if (prev == PGW_MSG_BIND)
            ok = t == PGW_MSG_DESCRIBE || t == PGW_MSG_EXECUTE;
        else if (prev == PGW_MSG_DESCRIBE)
            ok = t == PGW_MSG_EXECUTE;
        else
            ok = t == PGW_MSG_SYNC;
        if (!ok) {
            /* A named Parse of a legacy call is remembered whatever follows it. */
            n = n > 0 && fr[0].type == PGW_MSG_PARSE ? 1 : 0;
            break;
        }
        off += fr[n].total_len;
        n++;
        if (t == PGW_MSG_SYNC) {
            complete = true;
            break;
        }
        if (off > PX_ICPT_MAX_MSG)
            break;
    }
    bool has_parse = n > 0 && fr[0].type == PGW_MSG_PARSE;
    pgw_parse_t parse;
    if (has_parse) {
        if (pgw_decode_parse(&fr[0], &parse) != 0)
            goto pass_batch;
        ic = note_settings(c, ic, parse.sql.ptr, parse.sql.len);
        if (parse.name.len != 0) {
            if (ic == NULL)
                ic = icpt_get(c);
            note_named_parse(c, ic, &parse);
            goto pass_batch;
        }
        if (parse.nparams > RW_MAX_ARGS || !rw_prefilter(parse.sql.ptr, parse.sql.len))
            goto pass_batch;
        if (ic == NULL && (ic = icpt_get(c)) == NULL)
            goto pass_batch;
        uint32_t oids[RW_MAX_ARGS];
        for (uint16_t i = 0; i < parse.nparams; i++)
            oids[i] = pgw_parse_param_oid(&parse, i);
        rw_reason_t why = RW_REASON_NONE;
        owned = rw_template_from_parse(parse.sql.ptr, oids, parse.nparams, &why);
        if (owned == NULL)
            goto pass_batch;
    }
    if (!complete)
        goto pass_batch;
    int bi = has_parse ? 1 : 0;
    bool has_desc = fr[bi + 1].type == PGW_MSG_DESCRIBE;
    pgw_bind_t bind;
    pgw_execute_t exe;
    pgw_target_t desc = {0, {NULL, 0}};
    if (pgw_decode_bind(&fr[bi], &bind) != 0 ||
        (has_desc && pgw_decode_describe(&fr[bi + 1], &desc) != 0) ||
        pgw_decode_execute(&fr[bi + (has_desc ? 2 : 1)], &exe) != 0)
        goto pass_batch;
    const rw_template_t *t = owned;
    if (!has_parse)
        t = stmt_find(ic, bind.stmt.ptr, bind.stmt.len);
    else if (bind.stmt.len != 0)
        t = NULL;
    if (t == NULL || bind.portal.len != 0 || exe.portal.len != 0 || exe.max_rows != 0)
        goto pass_batch;
    if (has_desc && !(desc.kind == 'P' && desc.name.len == 0) &&
        !(desc.kind == 'S' && desc.name.len == bind.stmt.len &&
          memcmp(desc.name.ptr, bind.stmt.ptr, desc.name.len) == 0))
        goto pass_batch;
    uint64_t t0 = uv_hrtime();
    rw_reason_t reason = RW_REASON_NONE;
    rw_call_t call;
    memset(&call, 0, sizeof(call));
    int rc = rw_template_bind(t, &bind, &call, &reason);
    bool text_results = true;
    for (uint16_t i = 0; i < bind.nresult_formats; i++)
        if (pgw_bind_result_format(&bind, i) != 0)
            text_results = false;
    if (rc <= 0 || !text_results) {
        /* Recognised, but the values or formats cannot be answered here: counted as passed. */
        rw_fn_t fn = rw_template_call(t)->fn;
        rw_reason_t why = !text_results ? RW_REASON_RESULT_FORMAT : reason;
        px_icpt_stats_t *st = px_stats_get(c->dbname, fn);
        st->calls++;
        count_pass(st, why);
        px_stats_candidate(c->dbname, fn, false, why);
        rw_call_clear(&call);
        goto pass_batch;
    }
    ic->ext = true;
    ic->ext_parse = has_parse;
    ic->ext_describe = has_desc ? (char)desc.kind : 0;
    ic->ext_nparams = rw_template_nparams(t);
    for (uint16_t i = 0; i < ic->ext_nparams && i < RW_MAX_ARGS; i++)
        ic->ext_param_oids[i] = rw_template_param_oid(t, i);
    rw_template_free(owned);
    owned = NULL;
    ssize_t r = dispatch_call(c, ic, &call, (uint32_t)off, t0, NULL);
    if (r >= 0)
        return r;
pass_batch:
    rw_template_free(owned);
    if (ic == NULL)
        ic = icpt_get(c);
    if (ic != NULL)
        ic->pass_batch = true;
    return pass(c, ic);
}

/* Frames a complete Query or Parse at data and points *sql at its statement text (and fills *parse
   for a Parse, whose name the cache needs). 0 on success, -1 when it does not frame or decode. */
static int statement_sql(const uint8_t *data, size_t len, pgw_str_t *sql, pgw_parse_t *parse,
                         bool *is_parse)
{
    pgw_frame_t f;
    size_t need;
    if (pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data, len, &f, &need) < 0)
        return -1;
    *is_parse = f.type == PGW_MSG_PARSE;
    if (!*is_parse) {
        pgw_query_t q;
        if (pgw_decode_query(&f, &q) != 0)
            return -1;
        *sql = q.sql;
        return 0;
    }
    if (pgw_decode_parse(&f, parse) != 0)
        return -1;
    *sql = parse->sql;
    return 0;
}

/* Tables a client message may write, for the native memos and for shadow mode (0 = none, or
   not known yet: an incomplete small message is seen again once complete). A statement too long
   to look at counts as a write of every table. A named statement that writes is executed later
   by Binds that carry no SQL: the client remembers the union of what its named statements write,
   and any Bind of a named statement counts as a write of that union (over-reporting is safe: a
   memo is rebuilt, a shadow comparison is skipped). */
static rw_tableset_t message_writes(px_client_t *c, const uint8_t *data, size_t len,
                                    const pgw_frame_t *peek)
{
    if (peek->type == PGW_MSG_BIND) {
        px_icpt_client_t *ic = icpt_find(c);
        /* The statement name follows the portal name; an empty name is byte 0 after it. */
        if (ic != NULL && ic->named_writes != 0) {
            size_t end = len < peek->total_len ? len : peek->total_len;
            const uint8_t *z = end > 5 ? memchr(data + 5, 0, end - 5) : NULL;
            if (z == NULL || z + 1 >= data + end || z[1] != 0)
                return ic->named_writes;
        }
        return 0;
    }
    if (peek->total_len > PX_ICPT_MAX_MSG)
        return RW_TABLES_ALL;
    if (len < peek->total_len)
        return 0;  /* seen again once complete */
    pgw_str_t sql;
    pgw_parse_t p;
    bool is_parse;
    if (statement_sql(data, len, &sql, &p, &is_parse) != 0)
        return 0;
    if (!rw_writes_prefilter(sql.ptr, sql.len))
        return 0;
    rw_tableset_t set = RW_TABLES_ALL;
    if (rw_writes_tables(sql.ptr, &set) == 0 || set == 0)
        return 0;
    if (is_parse && p.name.len != 0) {
        px_icpt_client_t *ic = icpt_get(c);
        if (ic != NULL)
            ic->named_writes |= set;
    }
    return set;
}

/* ---------------------------------------------------------------------------------------------
 * Shadow mode and concurrent writes. The client gets PostgreSQL's answer at once; the native side
 * runs a little later on another connection. A write to the function's tables that commits in
 * between makes the two answers differ although the implementation is right. So writes pgshim
 * sees are counted per tenant and table (a write epoch), and a comparison is only counted when no
 * write of its tables was issued during it and no transaction that had written them was still
 * open when it started (such a transaction may commit in between); otherwise a difference is
 * counted as shadow_skipped, not as a mismatch. Writes that bypass pgshim are not seen.
 * ------------------------------------------------------------------------------------------- */

typedef struct shadow_db {
    struct shadow_db *next;
    char *dbname;
    uint64_t epoch[RW_TABLE__COUNT];   /* write statements seen per table, since start */
} shadow_db_t;

static shadow_db_t *g_shadow_dbs;

static shadow_db_t *shadow_db_get(const char *dbname)
{
    for (shadow_db_t *d = g_shadow_dbs; d != NULL; d = d->next)
        if (strcmp(d->dbname, dbname) == 0)
            return d;
    shadow_db_t *d = calloc(1, sizeof(*d));
    if (d == NULL || (d->dbname = strdup(dbname)) == NULL) {
        free(d);
        return NULL;
    }
    d->next = g_shadow_dbs;
    g_shadow_dbs = d;
    return d;
}


/* True while c has a transaction open or a statement in flight on its server. */
static bool client_in_transaction(const px_client_t *c)
{
    const px_server_t *s = c->server;
    return s != NULL && (s->last_status != (uint8_t)'I' || s->pending > 0 || s->unsynced);
}

/* Sum of the write epochs of `tables` (NULL db: 0). */
static uint64_t shadow_epoch(const shadow_db_t *d, rw_tableset_t tables)
{
    uint64_t sum = 0;
    for (int t = 0; d != NULL && t < RW_TABLE__COUNT; t++)
        if (tables & (1u << t))
            sum += d->epoch[t];
    return sum;
}

/* A statement of c that may write `tables` goes to the server (shadow mode on for its tenant). */
static void note_shadow_writes(px_client_t *c, rw_tableset_t tables)
{
    shadow_db_t *d = shadow_db_get(c->dbname);
    for (int t = 0; d != NULL && t < RW_TABLE__COUNT; t++)
        if (tables & (1u << t))
            d->epoch[t]++;
    px_icpt_client_t *ic = icpt_get(c);
    if (ic != NULL)
        ic->txn_writes |= tables;
}

/* True when some client of the tenant has an open transaction that wrote one of `tables`. */
static bool shadow_writer_open(const char *tenant, rw_tableset_t tables)
{
    px_list_t *it, *itmp, *ct, *ctmp;
    px_list_foreach_safe(it, itmp, &g_pools)
    {
        px_pool_t *pool = px_container_of(it, px_pool_t, node);
        if (strcmp(pool->dbname, tenant) != 0)
            continue;
        px_list_foreach_safe(ct, ctmp, &pool->active_clients)
        {
            px_client_t *c = px_container_of(ct, px_client_t, node);
            const px_icpt_client_t *ic = icpt_find(c);
            if (ic != NULL && (ic->txn_writes & tables) != 0 && client_in_transaction(c))
                return true;
        }
    }
    return false;
}

/* Client messages that may write: reported to the native memos and to shadow mode. */
static void note_writes(px_client_t *c, const uint8_t *data, size_t len, const pgw_frame_t *f)
{
    bool memos = px_native_butree_ttl_ms > 0;
    bool shadow = px_flags_any(c->dbname, PX_MODE_SHADOW);
    if (shadow && f->type != PGW_MSG_BIND && !client_in_transaction(c)) {
        px_icpt_client_t *ic = icpt_find(c);
        if (ic != NULL)
            ic->txn_writes = 0;  /* a new transaction starts with this statement */
    }
    if (!memos && !shadow)
        return;
    rw_tableset_t set = message_writes(c, data, len, f);
    if (set == 0)
        return;
    if (memos)
        px_native_note_writes(c->pool, c, set);
    if (shadow)
        note_shadow_writes(c, set);
}

/* Cache invalidation: the legacy tables a Query/Parse may write are remembered for the client
   (cachemode.c bumps them when its transaction ends). A statement too long to buffer is judged
   by the part that is here (any legacy-table word in it counts as a write of every table). */
static void note_cache_writes(px_client_t *c, const uint8_t *data, size_t len,
                              const pgw_frame_t *peek)
{
    if (peek->type == PGW_MSG_BIND) {
        /* Only the statement name matters; it sits right after the portal name, so it is read
           from the bytes already here (a long Bind streams through without being seen whole). */
        size_t end = len < peek->total_len ? len : peek->total_len;
        const uint8_t *portal = data + 5, *stop = data + end;
        const uint8_t *z = portal < stop ? memchr(portal, 0, (size_t)(stop - portal)) : NULL;
        const uint8_t *z2 = z != NULL && z + 1 < stop ? memchr(z + 1, 0, (size_t)(stop - z - 1)) : NULL;
        if (z2 != NULL)
            px_cache_note_bind(c, (const char *)z + 1, (size_t)(z2 - z - 1));
        return;
    }
    if (peek->total_len > PX_ICPT_MAX_MSG || len < peek->total_len) {
        if (peek->total_len > PX_ICPT_MAX_MSG) {
            size_t have = (len < peek->total_len ? len : peek->total_len) - 5;
            const char *p = (const char *)data + 5;
            const char *z = peek->type == PGW_MSG_PARSE ? memchr(p, 0, have) : NULL;
            if (z != NULL)  /* a long Parse: remember its name with the prefix's verdict */
                px_cache_note_parse(c, p, (size_t)(z - p), z + 1, have - (size_t)(z - p) - 1, false);
            else
                px_cache_note_statement(c, p, have, false);
        }
        return;  /* a small one is seen again once complete */
    }
    pgw_str_t sql;
    pgw_parse_t p;
    bool is_parse;
    if (statement_sql(data, len, &sql, &p, &is_parse) != 0)
        return;
    if (is_parse)
        px_cache_note_parse(c, p.name.ptr, p.name.len, sql.ptr, sql.len, true);
    else
        px_cache_note_statement(c, sql.ptr, sql.len, true);
}

ssize_t px_intercept_client_data(px_client_t *c, const uint8_t *data, size_t len)
{
    if (c->msg_left != 0 || c->pool == NULL)
        return PX_ICPT_CONTINUE;
    px_icpt_client_t *ic = icpt_find(c);
    if (ic != NULL) {
        if (ic->busy)
            return 0;
        if (ic->skip_front) {
            ic->skip_front = false;
            return (ssize_t)ic->front_len;
        }
        if (ic->pass_front)
            return PX_ICPT_CONTINUE;
    }
    pgw_frame_t f;
    if (pgw_frame_peek(PGW_F, data, len, &f) < 0)
        return PX_ICPT_CONTINUE;  /* incomplete header or bad message: the normal path decides */
    if (f.type == PGW_MSG_QUERY || f.type == PGW_MSG_PARSE || f.type == PGW_MSG_BIND)
        note_writes(c, data, len, &f);
    if (f.type == PGW_MSG_QUERY || f.type == PGW_MSG_PARSE || f.type == PGW_MSG_BIND)
        note_cache_writes(c, data, len, &f);
    if (f.type == PGW_MSG_CLOSE) {
        size_t need;
        pgw_target_t tg;
        if (ic != NULL && ic->nstmts > 0 &&
            pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data, len, &f, &need) > 0 &&
            pgw_decode_close(&f, &tg) == 0 && tg.kind == 'S')
            stmt_forget(ic, tg.name.ptr, tg.name.len);
        return PX_ICPT_CONTINUE;
    }
    if (f.type == PGW_MSG_PARSE || f.type == PGW_MSG_BIND) {
        /* Messages of a batch already going through are not looked at again, except that a
           Parse may still name a statement or change a setting. */
        if (ic != NULL && ic->pass_batch && c->server != NULL && c->server->unsynced) {
            size_t need;
            pgw_parse_t parse;
            if (f.type == PGW_MSG_PARSE &&
                pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data, len, &f, &need) > 0 &&
                pgw_decode_parse(&f, &parse) == 0) {
                (void)note_settings(c, ic, parse.sql.ptr, parse.sql.len);
                note_named_parse(c, ic, &parse);
            }
            return PX_ICPT_CONTINUE;
        }
        if (f.type == PGW_MSG_BIND && (ic == NULL || ic->nstmts == 0)) {
            if (ic != NULL)
                ic->pass_batch = true;
            return PX_ICPT_CONTINUE;  /* no remembered statement: nothing to answer */
        }
        if (ic != NULL)
            ic->pass_batch = false;
        return handle_batch(c, ic, data, len);
    }
    if (f.type != PGW_MSG_QUERY)
        return PX_ICPT_CONTINUE;
    if (f.total_len > PX_ICPT_MAX_MSG) {
        /* Too big to be a legacy call, but it could still change a setting: scan the part
           that is already here (a setting named past it is a documented gap). */
        size_t have = (len < f.total_len ? len : f.total_len) - 5;
        if (settings_effect((const char *)data + 5, have) > 0) {
            if (ic == NULL)
                ic = icpt_get(c);
            if (ic != NULL)
                ic->tainted = true;
        }
        return PX_ICPT_CONTINUE;
    }
    if (len < f.total_len)
        return 0;  /* buffer the whole Query (small) */
    size_t need;
    if (pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data, len, &f, &need) < 0)
        return PX_ICPT_CONTINUE;
    if (ic != NULL)
        ic->front_len = f.total_len;
    ssize_t r = handle_query(c, ic, &f);
    return r;
}

/* ---------------------------------------------------------------------------------------------
 * Shadow mode: the Query went through unchanged; PostgreSQL's reply to it is copied as it streams
 * to the client (px_intercept_server_data) up to its ReadyForQuery, the native answer is computed
 * on a native connection, and the two are compared once both are in. The client is never
 * delayed: nothing on its path waits for the native side. One shadow comparison per client at a
 * time; calls arriving while one is in flight are not shadowed.
 * ------------------------------------------------------------------------------------------- */

#define SHADOW_MAX_CAPTURE (1024u * 1024u)

typedef struct px_shadow {
    px_icpt_client_t *ic;
    rw_fn_t fn;
    char *sql;                  /* for the mismatch log */
    pgw_buf_t pg;               /* PostgreSQL's reply messages, without ReadyForQuery */
    size_t scanned;             /* bytes of pg already framed */
    bool pg_done, pg_broken;
    pgw_buf_t nat;              /* native describe + body */
    bool nat_done, nat_ok;
    px_native_job_t *job;
    uint64_t epoch;             /* write epoch of fn's tables when the call arrived */
    bool writer_open;           /* a transaction that wrote them was open then */
} px_shadow_t;

static void shadow_free(px_shadow_t *sh)
{
    if (sh == NULL)
        return;
    px_native_abandon(sh->job);
    pgw_buf_free(&sh->pg);
    pgw_buf_free(&sh->nat);
    free(sh->sql);
    free(sh);
}

typedef struct msg_view {
    uint8_t tag;
    const uint8_t *p;           /* whole message */
    uint32_t len;
} msg_view_t;

typedef struct msg_list {
    msg_view_t *v;
    size_t n, cap;
    bool failed;
} msg_list_t;

static void msgs_split(const uint8_t *data, size_t len, msg_list_t *out)
{
    size_t off = 0;
    while (off < len) {
        pgw_frame_t f;
        if (pgw_frame_peek(PGW_B, data + off, len - off, &f) < 0 || f.total_len > len - off) {
            out->failed = true;
            return;
        }
        if (out->n == out->cap) {
            size_t nc = out->cap ? out->cap * 2 : 32;
            msg_view_t *nv = realloc(out->v, nc * sizeof(*nv));
            if (nv == NULL) {
                out->failed = true;
                return;
            }
            out->v = nv;
            out->cap = nc;
        }
        out->v[out->n++] = (msg_view_t){f.tag, data + off, f.total_len};
        off += f.total_len;
    }
}

static int cmp_rows(const void *a, const void *b)
{
    const msg_view_t *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int r = memcmp(x->p, y->p, n);
    return r != 0 ? r : (x->len > y->len) - (x->len < y->len);
}

/* Field `code` (e.g. 'C', 'V', 'M') of an ErrorResponse/NoticeResponse message. */
static pgw_str_t err_field(const msg_view_t *m, uint8_t code)
{
    pgw_frame_t f;
    size_t need;
    pgw_str_t none = {NULL, 0};
    if (pgw_frame_next(PGW_PHASE_NORMAL, PGW_B, m->p, m->len, &f, &need) < 0)
        return none;
    pgw_error_fields_t e;
    if (pgw_decode_error(&f, &e) != 0)
        return none;
    size_t off = 0;
    uint8_t c;
    pgw_str_t v;
    while (pgw_error_next_field(&e, &off, &c, &v) == 1)
        if (c == code)
            return v;
    return none;
}

static bool str_same(pgw_str_t a, pgw_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Compares two reply streams as "the same answer" (ARCHITECTURE.md): RowDescription,
   CommandComplete byte for byte, DataRows in order (as multisets when `multiset`), notices by
   severity, SQLSTATE and message, errors by SQLSTATE. Returns NULL or what differs. */
static const char *shadow_diff(const msg_list_t *pg, const msg_list_t *nat, bool multiset)
{
    msg_list_t rows[2] = {{0}, {0}}, other[2] = {{0}, {0}};
    const msg_list_t *src[2] = {pg, nat};
    const char *why = NULL;
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < src[k]->n; i++) {
            msg_list_t *dst = src[k]->v[i].tag == (uint8_t)'D' ? &rows[k] : &other[k];
            if (dst->n == dst->cap) {
                size_t nc = dst->cap ? dst->cap * 2 : 64;
                msg_view_t *nv = realloc(dst->v, nc * sizeof(*nv));
                if (nv == NULL) {
                    why = "out of memory comparing";
                    goto out;
                }
                dst->v = nv;
                dst->cap = nc;
            }
            dst->v[dst->n++] = src[k]->v[i];
        }
    }
    if (rows[0].n != rows[1].n) {
        why = "row count";
        goto out;
    }
    if (multiset && rows[0].n > 1) {
        qsort(rows[0].v, rows[0].n, sizeof(msg_view_t), cmp_rows);
        qsort(rows[1].v, rows[1].n, sizeof(msg_view_t), cmp_rows);
    }
    for (size_t i = 0; i < rows[0].n; i++)
        if (cmp_rows(&rows[0].v[i], &rows[1].v[i]) != 0) {
            why = "row contents";
            goto out;
        }
    if (other[0].n != other[1].n) {
        why = "message sequence";
        goto out;
    }
    for (size_t i = 0; i < other[0].n; i++) {
        const msg_view_t *a = &other[0].v[i], *b = &other[1].v[i];
        if (a->tag != b->tag) {
            why = "message sequence";
            goto out;
        }
        if (a->tag == (uint8_t)'E') {
            if (!str_same(err_field(a, 'C'), err_field(b, 'C')))
                why = "error SQLSTATE";
        } else if (a->tag == (uint8_t)'N') {
            if (!str_same(err_field(a, 'C'), err_field(b, 'C')) ||
                !str_same(err_field(a, 'V'), err_field(b, 'V')) ||
                !str_same(err_field(a, 'M'), err_field(b, 'M')))
                why = "notice";
        } else if (cmp_rows(a, b) != 0) {
            why = a->tag == (uint8_t)'T' ? "RowDescription" : "CommandComplete";
        }
        if (why != NULL)
            goto out;
    }
out:
    for (int k = 0; k < 2; k++) {
        free(rows[k].v);
        free(other[k].v);
    }
    return why;
}

static void shadow_maybe_compare(px_shadow_t *sh)
{
    if (!sh->pg_done || !sh->nat_done)
        return;
    px_icpt_client_t *ic = sh->ic;
    px_client_t *c = ic->c;
    ic->shadow = NULL;
    px_icpt_stats_t *st = px_stats_get(c->dbname, sh->fn);
    if (!sh->nat_ok || sh->pg_broken) {
        shadow_free(sh);
        return;
    }
    msg_list_t pg = {0}, nat = {0};
    msgs_split(sh->pg.data, sh->pg.len, &pg);
    msgs_split(sh->nat.data, sh->nat.len, &nat);
    if (!pg.failed && !nat.failed) {
        rw_family_t fam = rw_fn_family(sh->fn);
        bool multiset = fam == RW_FAM_JOBS || fam == RW_FAM_ASSETS;
        const char *why = shadow_diff(&pg, &nat, multiset);
        rw_tableset_t reads = rw_fn_reads(sh->fn);
        if (why != NULL &&
            (sh->writer_open || shadow_epoch(shadow_db_get(c->dbname), reads) != sh->epoch)) {
            /* A write may have committed between PostgreSQL's answer and the native one. */
            st->shadow_skipped++;
            px_log_debug("C-%llu: %s/%s shadow difference not counted: a write of its tables "
                         "ran concurrently (%s)", (unsigned long long)c->id, c->dbname,
                         rw_fn_name(sh->fn), why);
            why = NULL;
        } else {
            st->shadow_compared++;
        }
        if (why != NULL) {
            st->shadow_mismatches++;
            px_log_warn("C-%llu: %s/%s shadow mismatch (%s) for: %s", (unsigned long long)c->id,
                        c->dbname, rw_fn_name(sh->fn), why, sh->sql);
        } else {
            px_log_debug("C-%llu: shadow match for %s", (unsigned long long)c->id,
                         rw_fn_name(sh->fn));
        }
    }
    free(pg.v);
    free(nat.v);
    shadow_free(sh);
}

static void shadow_native_cb(void *arg, rw_exec_t *ex, rw_exec_status_t st, rw_reason_t reason)
{
    px_shadow_t *sh = arg;
    sh->job = NULL;
    sh->nat_done = true;
    if (st == RW_EXEC_DONE) {
        const pgw_buf_t *d = rw_exec_describe(ex), *b = rw_exec_body(ex);
        pgw_buf_append(&sh->nat, d->data, d->len);
        pgw_buf_append(&sh->nat, b->data, b->len);
        sh->nat_ok = !pgw_buf_failed(&sh->nat);
    } else {
        count_fallback(px_stats_get(sh->ic->c->dbname, sh->fn), reason);
    }
    shadow_maybe_compare(sh);
}

void px_intercept__shadow_start(px_client_t *c, const rw_call_t *call, rw_fn_t fn,
                                const pgw_frame_t *query)
{
    px_icpt_client_t *ic = icpt_find(c);
    px_icpt_stats_t *st = px_stats_get(c->dbname, fn);
    if (ic == NULL || ic->shadow != NULL) {
        st->shadow_skipped++;
        return;
    }
    px_shadow_t *sh = calloc(1, sizeof(*sh));
    pgw_query_t q;
    if (sh == NULL || pgw_decode_query(query, &q) != 0) {
        st->shadow_skipped++;
        free(sh);
        return;
    }
    sh->ic = ic;
    sh->fn = fn;
    sh->epoch = shadow_epoch(shadow_db_get(c->dbname), rw_fn_reads(fn));
    sh->writer_open = shadow_writer_open(c->dbname, rw_fn_reads(fn));
    sh->sql = strndup(q.sql.ptr, q.sql.len);
    pgw_buf_init(&sh->pg);
    pgw_buf_init(&sh->nat);
    rw_exec_t *ex = rw_exec_new(call);
    if (ex == NULL || sh->sql == NULL) {
        st->shadow_skipped++;
        rw_exec_free(ex);
        shadow_free(sh);
        return;
    }
    ic->shadow = sh;  /* capture starts now: the Query is forwarded right after this */
    rw_exec_status_t xs = RW_EXEC_FALLBACK;
    rw_reason_t reason = RW_REASON_NONE;
    int rc = px_native_run(c->pool, fn, ex, shadow_native_cb, sh, &sh->job, &xs, &reason);
    if (rc < 0) {
        count_fallback(st, reason);
        ic->shadow = NULL;
        shadow_free(sh);
        return;
    }
    if (rc == 1) {
        shadow_native_cb(sh, ex, xs, reason);
        rw_exec_free(ex);
    }
}

void px_intercept_server_data(px_client_t *c, const uint8_t *data, size_t len)
{
    px_icpt_client_t *ic = icpt_find(c);
    if (ic == NULL || ic->shadow == NULL || ic->shadow->pg_done)
        return;
    px_shadow_t *sh = ic->shadow;
    if (sh->pg.len + len > SHADOW_MAX_CAPTURE) {
        sh->pg_broken = true;
        sh->pg_done = true;
        shadow_maybe_compare(sh);
        return;
    }
    pgw_buf_append(&sh->pg, data, len);
    /* Frame what is complete; stop at the Query's ReadyForQuery and drop anything after it. */
    while (sh->scanned < sh->pg.len) {
        pgw_frame_t f;
        if (pgw_frame_peek(PGW_B, sh->pg.data + sh->scanned, sh->pg.len - sh->scanned, &f) < 0 ||
            f.total_len > sh->pg.len - sh->scanned)
            break;
        if (f.tag == (uint8_t)'Z') {
            sh->pg.len = sh->scanned;
            sh->pg_done = true;
            break;
        }
        /* ParameterStatus and NotificationResponse are not part of the answer. */
        if (f.tag == (uint8_t)'S' || f.tag == (uint8_t)'A') {
            memmove(sh->pg.data + sh->scanned, sh->pg.data + sh->scanned + f.total_len,
                    sh->pg.len - sh->scanned - f.total_len);
            sh->pg.len -= f.total_len;
            continue;
        }
        sh->scanned += f.total_len;
    }
    if (pgw_buf_failed(&sh->pg)) {
        sh->pg_broken = true;
        sh->pg_done = true;
    }
    if (sh->pg_done)
        shadow_maybe_compare(sh);
}

/* ---------------------------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------------------------- */

/* Reads the whole file into a NUL-terminated heap string; NULL on failure. */
static char *read_text_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (len < cap - 1) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
            }
            break;
        }
        char *nb = realloc(buf, cap * 2);
        if (nb == NULL) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (buf != NULL)
        buf[len] = '\0';
    return buf;
}

void px_intercept_config_applied(const px_config_t *cfg)
{
    px_cache_config_applied(cfg->redis);
    px_native_max_conns = cfg->native_pool_size > 0 ? cfg->native_pool_size : 4;
    px_native_step_timeout_ms =
        cfg->native_query_timeout > 0 ? (uint64_t)(cfg->native_query_timeout * 1000.0) : 5000;
    px_native_butree_ttl_ms =
        cfg->native_butree_ttl > 0 ? (uint64_t)(cfg->native_butree_ttl * 1000.0) : 0;
    /* note_writes reports writes of every legacy table (px_native.h). */
    px_native_reported_tables = RW_TABLES_ALL;
    const char *path = cfg->caps_query_file;
    if (path == NULL || path[0] == '\0') {
        if (rw_set_caps_query(NULL) != 0)
            px_log_warn("cannot clear the capability query");
        return;
    }
    char *sql = read_text_file(path);
    if (sql == NULL) {
        px_log_error("caps_query_file %s: cannot read it; keeping the previous text", path);
        return;
    }
    if (rw_set_caps_query(sql) != 0)
        px_log_error("caps_query_file %s: not exactly one SQL statement; keeping the previous text",
                     path);
    else
        px_log_info("capability query loaded from %s", path);
    free(sql);
}
