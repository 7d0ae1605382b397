/*
 * cache/ against real redis-server processes, driven by a libuv loop with hiredis's libuv
 * adapter (what proxy/ will do) and a 10 ms tick timer.
 *
 * Needs REDIS_PORT (a Redis on 127.0.0.1 used for the TCP test, with a private key prefix) and a
 * redis-server binary: the other tests spawn their own server on a private Unix socket so they
 * can kill, restart, pause and corrupt it. Without REDIS_PORT every test here is skipped.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libuv.h>

#include "cache.h"
#include "cache_test_util.h"

/* ---------------------------------------------------------------------------------------------
 * Redis servers
 * ------------------------------------------------------------------------------------------- */
typedef struct rs {
    const char *password;         /* non-NULL: start with requirepass */
    pid_t pid;
    char dir[64];
    char sock[128];
} rs_t;

static void need_redis(void)
{
    if (getenv("REDIS_PORT") == NULL || *getenv("REDIS_PORT") == '\0')
        cr_skip_test("REDIS_PORT unset: Redis integration tests skipped");
    if (access("/usr/bin/redis-server", X_OK) != 0)
        cr_skip_test("/usr/bin/redis-server missing: Redis integration tests skipped");
}

static redisContext *sync_connect(const rs_t *r)
{
    struct timeval tv = {1, 0};
    redisContext *rc = redisConnectUnixWithTimeout(r->sock, tv);
    if (rc == NULL || rc->err) {
        if (rc)
            redisFree(rc);
        return NULL;
    }
    return rc;
}

static void rs_start(rs_t *r)
{
    if (r->dir[0] == '\0') {
        strcpy(r->dir, "/tmp/pgshim-cache-XXXXXX");
        cr_assert_not_null(mkdtemp(r->dir));
        snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    }
    char log[128];
    snprintf(log, sizeof log, "%s/redis.log", r->dir);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl("/usr/bin/redis-server", "redis-server", "--port", "0", "--unixsocket", r->sock,
              "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", r->dir,
              "--logfile", log, "--requirepass", r->password ? r->password : "",
              (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 500; i++) {
        redisContext *rc = sync_connect(r);
        if (rc) {
            redisReply *rep = redisCommand(rc, "PING");
            /* With requirepass, NOAUTH still proves the server is up. */
            bool ok = rep && (rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_ERROR);
            if (rep)
                freeReplyObject(rep);
            redisFree(rc);
            if (ok)
                return;
        }
        usleep(10000);
    }
    cr_assert_fail("redis-server did not start on %s", r->sock);
}

static void rs_kill(rs_t *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

static void rs_cleanup(rs_t *r)
{
    rs_kill(r);
    if (r->dir[0]) {
        char p[160];
        snprintf(p, sizeof p, "%s/redis.log", r->dir);
        unlink(p);
        unlink(r->sock);
        rmdir(r->dir);
        r->dir[0] = '\0';
    }
}

/* Runs one command on a blocking connection; returns the reply (caller frees) or NULL. */
static redisReply *sync_cmd(const rs_t *r, const char *fmt, ...)
{
    redisContext *rc = sync_connect(r);
    if (rc == NULL)
        return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *rep = redisvCommand(rc, fmt, ap);
    va_end(ap);
    redisFree(rc);
    return rep;
}

/* ---------------------------------------------------------------------------------------------
 * Loop driver
 * ------------------------------------------------------------------------------------------- */
typedef struct env {
    uv_loop_t loop;
    uv_timer_t tick;
    cache_client_t *c[2];
} env_t;

static int attach_cb(redisAsyncContext *ac, void *loop)
{
    return redisLibuvAttach(ac, loop) == REDIS_OK ? 0 : -1;
}

static void tick_cb(uv_timer_t *t)
{
    env_t *e = t->data;
    for (int i = 0; i < 2; i++)
        if (e->c[i])
            cache_client_tick(e->c[i], cache_now_ms());
}

static void env_init(env_t *e)
{
    memset(e, 0, sizeof *e);
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    uv_timer_init(&e->loop, &e->tick);
    e->tick.data = e;
    uv_timer_start(&e->tick, tick_cb, 10, 10);
}

static void env_fini(env_t *e)
{
    for (int i = 0; i < 2; i++) {
        cache_client_free(e->c[i]);
        e->c[i] = NULL;
    }
    uv_timer_stop(&e->tick);
    uv_close((uv_handle_t *)&e->tick, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&e->loop), 0);
}

static bool run_until(env_t *e, const bool *flag, uint64_t ms)
{
    uint64_t end = cache_now_ms() + ms;
    while (!*flag && cache_now_ms() < end)
        uv_run(&e->loop, UV_RUN_ONCE);
    return *flag;
}

static void run_for(env_t *e, uint64_t ms)
{
    bool never = false;
    run_until(e, &never, ms);
}

static bool wait_ready(env_t *e, cache_client_t *c, int n, uint64_t ms)
{
    uint64_t end = cache_now_ms() + ms;
    while (cache_client_ready(c) < n && cache_now_ms() < end)
        uv_run(&e->loop, UV_RUN_ONCE);
    return cache_client_ready(c) >= n;
}

static cache_client_t *client_unix(env_t *e, const rs_t *r, const char *prefix, uint32_t pool,
                                   uint32_t timeout_ms)
{
    cache_config_t cfg;
    cache_config_defaults(&cfg);
    cfg.enabled = true;
    cfg.unix_path = r->sock;
    cfg.key_prefix = prefix;
    cfg.pool_size = pool;
    cfg.timeout_ms = timeout_ms;
    cache_client_t *c;
    cr_assert_eq(cache_client_new(&cfg, attach_cb, &e->loop, &c), 0);
    return c;
}

/* ---------------------------------------------------------------------------------------------
 * Operation wrappers: issue, run the loop until the callback fires, return the status.
 * ------------------------------------------------------------------------------------------- */
typedef struct outcome {
    bool fired;
    int status;
    uint32_t nrows;
    pgw_buf_t body;
    uint64_t at;
} outcome_t;

static void lookup_cb(void *arg, int status, cache_key_t *k, const cache_result_t *res)
{
    outcome_t *o = arg;
    o->fired = true;
    o->status = status;
    o->at = cache_now_ms();
    if (res) {
        o->nrows = res->nrows;
        pgw_buf_init(&o->body);
        pgw_buf_append(&o->body, res->describe, res->describe_len);
        pgw_buf_append(&o->body, res->body, res->body_len);
    }
}

static void done_cb(void *arg, int status)
{
    outcome_t *o = arg;
    o->fired = true;
    o->status = status;
    o->at = cache_now_ms();
}

static int do_lookup(env_t *e, cache_client_t *c, cache_key_t *k, outcome_t *o)
{
    memset(o, 0, sizeof *o);
    int rc = cache_lookup(c, k, lookup_cb, o, NULL);
    if (rc != 0)
        return rc;
    cr_assert(run_until(e, &o->fired, 2000), "lookup callback never fired");
    return o->status;
}

static int do_store(env_t *e, cache_client_t *c, cache_key_t *k, int nrows)
{
    pgw_buf_t d, b;
    pgw_buf_init(&d);
    pgw_buf_init(&b);
    tu_describe(&d, "id");
    tu_body(&b, nrows);
    outcome_t o = {0};
    int rc = cache_store(c, k, 60, d.data, d.len, b.data, b.len, done_cb, &o);
    pgw_buf_free(&d);
    pgw_buf_free(&b);
    if (rc != 0)
        return rc;
    cr_assert(run_until(e, &o.fired, 2000), "store callback never fired");
    return o.status;
}

static int do_bump(env_t *e, cache_client_t *c, const char *tenant, const char *table)
{
    outcome_t o = {0};
    int rc = cache_bump(c, tenant, &table, 1, done_cb, &o);
    if (rc != 0)
        return rc;
    cr_assert(run_until(e, &o.fired, 2000), "bump callback never fired");
    return o.status;
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------------- */

Test(redis, tcp_miss_store_hit_bump)
{
    need_redis();
    env_t e;
    env_init(&e);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "pgshim-test-%d", (int)getpid());
    cache_config_t cfg;
    cache_config_defaults(&cfg);
    cfg.enabled = true;
    cfg.port = atoi(getenv("REDIS_PORT"));
    cfg.key_prefix = prefix;
    cfg.publish_channel = "pgshim-test";
    cr_assert_eq(cache_client_new(&cfg, attach_cb, &e.loop, &e.c[0]), 0);
    cr_assert(wait_ready(&e, e.c[0], 2, 3000), "not connected to 127.0.0.1:%d", cfg.port);

    cache_key_t k;
    cr_assert_eq(tu_key(&k, prefix, "tenant_a", "100"), 0);
    outcome_t o;
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_MISS);
    cr_assert(k.have_gens);
    cr_assert_str_eq(k.gens[0], "0");
    cr_assert_eq(do_store(&e, e.c[0], &k, 3), CACHE_OK);
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_HIT);
    cr_assert_eq(o.nrows, 3);
    /* The hit returns exactly the stored messages. */
    pgw_buf_t want;
    pgw_buf_init(&want);
    tu_describe(&want, "id");
    tu_body(&want, 3);
    cr_assert_eq(o.body.len, want.len);
    cr_assert_eq(memcmp(o.body.data, want.data, want.len), 0);
    pgw_buf_free(&want);
    pgw_buf_free(&o.body);

    cr_assert_eq(do_bump(&e, e.c[0], "tenant_a", "pgbelonging"), CACHE_OK);
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_MISS);
    cr_assert_str_eq(k.gens[1], "1");
    /* A bump of another tenant's table does not touch this one. */
    cr_assert_eq(do_store(&e, e.c[0], &k, 1), CACHE_OK);
    cr_assert_eq(do_bump(&e, e.c[0], "tenant_b", "pgbelonging"), CACHE_OK);
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_HIT);
    pgw_buf_free(&o.body);

    cache_counters_t n = cache_client_counters(e.c[0]);
    cr_assert_eq(n.hits, 2);
    cr_assert_eq(n.misses, 2);
    cr_assert_eq(n.stores, 2);
    cr_assert_eq(n.invalidations, 2);
    cr_assert_eq(n.errors, 0);

    /* Leave nothing behind in the shared Redis. */
    redisContext *rc = redisConnect("127.0.0.1", cfg.port);
    cr_assert(rc && !rc->err);
    redisReply *rep = redisCommand(rc, "EVAL %s 0 %s",
                                   "for _, k in ipairs(redis.call('KEYS', ARGV[1] .. ':*')) do "
                                   "redis.call('DEL', k) end return 1",
                                   prefix);
    freeReplyObject(rep);
    redisFree(rc);
    cache_key_clear(&k);
    env_fini(&e);
}

/* Guarantee 3 and two pgshims sharing one Redis: a write committed (bump through the other
   client) between lookup and store keeps the stale result out. */
Test(redis, store_skipped_after_concurrent_bump)
{
    need_redis();
    rs_t r = {0};
    rs_start(&r);
    env_t e;
    env_init(&e);
    e.c[0] = client_unix(&e, &r, "pgshim", 2, 500);
    e.c[1] = client_unix(&e, &r, "pgshim", 1, 500);
    cr_assert(wait_ready(&e, e.c[0], 2, 3000));
    cr_assert(wait_ready(&e, e.c[1], 1, 3000));

    cache_key_t k1, k2;
    cr_assert_eq(tu_key(&k1, "pgshim", "t", "7"), 0);
    cr_assert_eq(tu_key(&k2, "pgshim", "t", "7"), 0);
    outcome_t o;
    cr_assert_eq(do_lookup(&e, e.c[0], &k1, &o), CACHE_MISS);
    /* "Computing"... meanwhile a write to jobneed commits through the other pgshim. */
    cr_assert_eq(do_bump(&e, e.c[1], "t", "jobneed"), CACHE_OK);
    cr_assert_eq(do_store(&e, e.c[0], &k1, 2), CACHE_SKIPPED);
    cr_assert_eq(cache_client_counters(e.c[0]).store_skipped, 1);

    /* The other pgshim misses, computes, stores; the first one now hits. */
    cr_assert_eq(do_lookup(&e, e.c[1], &k2, &o), CACHE_MISS);
    cr_assert_str_eq(k2.gens[0], "1");
    cr_assert_eq(do_store(&e, e.c[1], &k2, 5), CACHE_OK);
    cr_assert_eq(do_lookup(&e, e.c[0], &k1, &o), CACHE_HIT);
    cr_assert_eq(o.nrows, 5);
    pgw_buf_free(&o.body);

    /* While a bump is on the wire, this process refuses lookups of that tenant (another
       pooled connection could overtake the INCR); other tenants are unaffected. */
    outcome_t ob = {0};
    const char *tab = "jobneed";
    cr_assert_eq(cache_bump(e.c[0], "t", &tab, 1, done_cb, &ob), 0);
    cr_assert(cache_tenant_bypassed(e.c[0], "t"));
    cr_assert_eq(cache_lookup(e.c[0], &k1, lookup_cb, &o, NULL), CACHE_EBYPASS);
    cr_assert_not(cache_tenant_bypassed(e.c[0], "u"));
    cr_assert(run_until(&e, &ob.fired, 2000));
    cr_assert_eq(ob.status, CACHE_OK);
    cr_assert_not(cache_tenant_bypassed(e.c[0], "t"));

    /* Read-your-writes across processes: write through one, read through the other. */
    cr_assert_eq(do_bump(&e, e.c[0], "t", "pgbelonging"), CACHE_OK);
    cr_assert_eq(do_lookup(&e, e.c[1], &k2, &o), CACHE_MISS);

    cache_key_clear(&k1);
    cache_key_clear(&k2);
    env_fini(&e);
    rs_cleanup(&r);
}

Test(redis, garbage_and_foreign_values_are_misses)
{
    need_redis();
    rs_t r = {0};
    rs_start(&r);
    env_t e;
    env_init(&e);
    e.c[0] = client_unix(&e, &r, "pgshim", 1, 500);
    cr_assert(wait_ready(&e, e.c[0], 1, 3000));

    cache_key_t k, other;
    cr_assert_eq(tu_key(&k, "pgshim", "tenant_a", "1"), 0);
    cr_assert_eq(tu_key(&other, "pgshim", "tenant_b", "1"), 0);
    outcome_t o;
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_MISS);

    redisReply *rep = sync_cmd(&r, "SET %s %s", k.full, "definitely not a PGSC value");
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_MISS);
    cr_assert_eq(cache_client_counters(e.c[0]).decode_errors, 1);

    /* Another tenant's perfectly valid value under this tenant's key. */
    pgw_buf_t d, b;
    pgw_buf_init(&d);
    pgw_buf_init(&b);
    tu_describe(&d, "id");
    tu_body(&b, 1);
    uint8_t *v;
    size_t n;
    cr_assert_eq(cache_value_encode(&other, d.data, d.len, b.data, b.len, &v, &n), 0);
    rep = sync_cmd(&r, "SET %s %b", k.full, v, n);
    freeReplyObject(rep);
    free(v);
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_MISS);
    cr_assert_eq(cache_client_counters(e.c[0]).decode_errors, 2);

    /* A value of the wrong Redis type is an error, not a crash. */
    rep = sync_cmd(&r, "DEL %s", k.full);
    freeReplyObject(rep);
    rep = sync_cmd(&r, "LPUSH %s x", k.full);
    freeReplyObject(rep);
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_EREDIS);
    /* A non-numeric generation is refused too. */
    rep = sync_cmd(&r, "SET %s abc", k.gen_keys[0]);
    freeReplyObject(rep);
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_EREDIS);

    pgw_buf_free(&d);
    pgw_buf_free(&b);
    cache_key_clear(&k);
    cache_key_clear(&other);
    env_fini(&e);
    rs_cleanup(&r);
}

Test(redis, noscript_falls_back_to_eval)
{
    need_redis();
    rs_t r = {0};
    rs_start(&r);
    env_t e;
    env_init(&e);
    e.c[0] = client_unix(&e, &r, "pgshim", 1, 500);
    cr_assert(wait_ready(&e, e.c[0], 1, 3000));
    redisReply *rep = sync_cmd(&r, "SCRIPT FLUSH");
    freeReplyObject(rep);
    cache_key_t k;
    cr_assert_eq(tu_key(&k, "pgshim", "t", "1"), 0);
    outcome_t o;
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_MISS);
    rep = sync_cmd(&r, "SCRIPT FLUSH");
    freeReplyObject(rep);
    cr_assert_eq(do_store(&e, e.c[0], &k, 1), CACHE_OK);
    rep = sync_cmd(&r, "SCRIPT FLUSH");
    freeReplyObject(rep);
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_HIT);
    pgw_buf_free(&o.body);
    rep = sync_cmd(&r, "SCRIPT FLUSH");
    freeReplyObject(rep);
    cr_assert_eq(do_bump(&e, e.c[0], "t", "jobneed"), CACHE_OK);
    cr_assert_eq(cache_client_counters(e.c[0]).errors, 0);
    cache_key_clear(&k);
    env_fini(&e);
    rs_cleanup(&r);
}

/* Redis stopped mid-run: every call ends within the budget, nothing queues, a failed bump puts
   the tenant in bypass; after a restart the pool reconnects and the bypass clears by itself. */
Test(redis, stop_and_restart, .timeout = 30)
{
    need_redis();
    rs_t r = {0};
    rs_start(&r);
    env_t e;
    env_init(&e);
    e.c[0] = client_unix(&e, &r, "pgshim", 2, 50);
    cr_assert(wait_ready(&e, e.c[0], 2, 3000));
    cache_key_t k;
    cr_assert_eq(tu_key(&k, "pgshim", "t", "1"), 0);
    outcome_t o;
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_MISS);
    cr_assert_eq(do_store(&e, e.c[0], &k, 1), CACHE_OK);

    rs_kill(&r);
    /* Right after the kill the client may not have noticed yet: the outcome is then delivered
       by the callback, within timeout_ms plus a tick. */
    uint64_t t0 = cache_now_ms();
    memset(&o, 0, sizeof o);
    int rc = cache_lookup(e.c[0], &k, lookup_cb, &o, NULL);
    if (rc == 0) {
        cr_assert(run_until(&e, &o.fired, 1000));
        cr_assert(o.status == CACHE_EDISCONNECTED || o.status == CACHE_ETIMEOUT,
                  "status %d", o.status);
        cr_assert_leq(o.at - t0, 50 + 100, "outcome after %llu ms", (unsigned long long)(o.at - t0));
    } else {
        cr_assert_eq(rc, CACHE_EDOWN);
    }
    run_for(&e, 100);
    cr_assert_eq(cache_client_ready(e.c[0]), 0);
    /* Down: refused at once, no callback, nothing queued. */
    t0 = cache_now_ms();
    cr_assert_eq(cache_lookup(e.c[0], &k, lookup_cb, &o, NULL), CACHE_EDOWN);
    cr_assert_eq(do_store(&e, e.c[0], &k, 1), CACHE_EDOWN);
    const char *tab = "jobneed";
    cr_assert_eq(cache_bump(e.c[0], "t", &tab, 1, NULL, NULL), CACHE_EDOWN);
    cr_assert_leq(cache_now_ms() - t0, 5);
    cr_assert(cache_tenant_bypassed(e.c[0], "t"));
    cr_assert_not(cache_tenant_bypassed(e.c[0], "u"));
    cr_assert_eq(cache_lookup(e.c[0], &k, lookup_cb, &o, NULL), CACHE_EBYPASS);
    run_for(&e, 300); /* a few reconnect attempts fail and back off */

    rs_start(&r);
    cr_assert(wait_ready(&e, e.c[0], 2, 8000), "no reconnect after restart");
    uint64_t end = cache_now_ms() + 3000;
    while (cache_tenant_bypassed(e.c[0], "t") && cache_now_ms() < end)
        uv_run(&e.loop, UV_RUN_ONCE);
    cr_assert_not(cache_tenant_bypassed(e.c[0], "t"), "bypass not cleared");
    /* The retried bump reached the new server. */
    redisReply *rep = sync_cmd(&r, "GET %s", k.gen_keys[0]);
    cr_assert(rep && rep->type == REDIS_REPLY_STRING);
    cr_assert_str_eq(rep->str, "1");
    freeReplyObject(rep);
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_MISS);
    cr_assert_eq(do_store(&e, e.c[0], &k, 2), CACHE_OK);
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_HIT);
    pgw_buf_free(&o.body);
    cache_counters_t n = cache_client_counters(e.c[0]);
    cr_assert_gt(n.errors, 0);
    cr_assert_gt(n.down, 0);
    cache_key_clear(&k);
    env_fini(&e);
    rs_cleanup(&r);
}

/* Redis alive but not answering (CLIENT PAUSE): the request times out at timeout_ms, the
   connection is dropped and replaced once Redis answers again. */
Test(redis, slow_redis_times_out, .timeout = 30)
{
    need_redis();
    rs_t r = {0};
    rs_start(&r);
    env_t e;
    env_init(&e);
    e.c[0] = client_unix(&e, &r, "pgshim", 1, 50);
    cr_assert(wait_ready(&e, e.c[0], 1, 3000));
    cache_key_t k;
    cr_assert_eq(tu_key(&k, "pgshim", "t", "1"), 0);
    redisReply *rep = sync_cmd(&r, "CLIENT PAUSE 400 ALL");
    cr_assert(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    uint64_t t0 = cache_now_ms();
    outcome_t o;
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_ETIMEOUT);
    cr_assert_geq(o.at - t0, 50);
    cr_assert_leq(o.at - t0, 50 + 100, "timeout after %llu ms", (unsigned long long)(o.at - t0));
    cr_assert_eq(cache_client_counters(e.c[0]).timeouts, 1);
    cr_assert(wait_ready(&e, e.c[0], 1, 5000));
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_MISS);
    cache_key_clear(&k);
    env_fini(&e);
    rs_cleanup(&r);
}

typedef struct many {
    int fired;
    int miss;
} many_t;

static void many_cb(void *arg, int status, cache_key_t *k, const cache_result_t *res)
{
    many_t *m = arg;
    m->fired++;
    m->miss += status == CACHE_MISS;
}

/* Many lookups in flight over the pool at once; cancelled ones never call back. */
Test(redis, pipelined_and_cancelled)
{
    need_redis();
    rs_t r = {0};
    rs_start(&r);
    env_t e;
    env_init(&e);
    e.c[0] = client_unix(&e, &r, "pgshim", 3, 2000);
    cr_assert(wait_ready(&e, e.c[0], 3, 3000));
    enum { N = 300 };
    static cache_key_t keys[N];
    char arg[16];
    many_t m = {0};
    int cancelled = 0;
    for (int i = 0; i < N; i++) {
        snprintf(arg, sizeof arg, "%d", i);
        cr_assert_eq(tu_key(&keys[i], "pgshim", "t", arg), 0);
        cache_req_t *req;
        cr_assert_eq(cache_lookup(e.c[0], &keys[i], many_cb, &m, &req), 0);
        if (i % 10 == 0) {
            cache_cancel(e.c[0], req);
            cancelled++;
        }
    }
    uint64_t end = cache_now_ms() + 2000;
    while (m.fired < N - cancelled && cache_now_ms() < end)
        uv_run(&e.loop, UV_RUN_ONCE);
    run_for(&e, 50);
    cr_assert_eq(m.fired, N - cancelled);
    cr_assert_eq(m.miss, N - cancelled);
    for (int i = 0; i < N; i++)
        cache_key_clear(&keys[i]);
    env_fini(&e);
    rs_cleanup(&r);
}

Test(redis, disabled_and_unreachable)
{
    cache_config_t cfg;
    cache_config_defaults(&cfg);
    cache_client_t *c;
    cr_assert_eq(cache_client_new(&cfg, attach_cb, NULL, &c), 0);
    cache_key_t k;
    cr_assert_eq(tu_key(&k, "pgshim", "t", "1"), 0);
    cr_assert_eq(cache_lookup(c, &k, lookup_cb, NULL, NULL), CACHE_EDISABLED);
    const char *tab = "bt";
    cr_assert_eq(cache_bump(c, "t", &tab, 1, NULL, NULL), CACHE_EDISABLED);
    cr_assert_not(cache_tenant_bypassed(c, "t"));
    cache_client_free(c);

    /* Nothing listens on this socket: the pool stays down, calls are refused at once. */
    env_t e;
    env_init(&e);
    cfg.enabled = true;
    cfg.unix_path = "/nonexistent/pgshim-redis.sock";
    cr_assert_eq(cache_client_new(&cfg, attach_cb, &e.loop, &e.c[0]), 0);
    run_for(&e, 150);
    cr_assert_eq(cache_client_ready(e.c[0]), 0);
    cr_assert_eq(cache_lookup(e.c[0], &k, lookup_cb, NULL, NULL), CACHE_EDOWN);
    cr_assert_gt(cache_client_counters(e.c[0]).errors, 0);
    cache_key_clear(&k);
    env_fini(&e);
}

Test(redis, password_and_db)
{
    need_redis();
    rs_t r = {0};
    r.password = "s3cret pass";
    rs_start(&r);
    env_t e;
    env_init(&e);
    cache_config_t cfg;
    cache_config_defaults(&cfg);
    cfg.enabled = true;
    cfg.unix_path = r.sock;
    cfg.password = "s3cret pass";
    cfg.db = 3;
    cfg.pool_size = 1;
    cfg.timeout_ms = 500;
    cr_assert_eq(cache_client_new(&cfg, attach_cb, &e.loop, &e.c[0]), 0);
    cfg.password = "wrong";
    cr_assert_eq(cache_client_new(&cfg, attach_cb, &e.loop, &e.c[1]), 0);
    cr_assert(wait_ready(&e, e.c[0], 1, 3000));
    cache_key_t k;
    cr_assert_eq(tu_key(&k, "pgshim", "t", "1"), 0);
    outcome_t o;
    cr_assert_eq(do_lookup(&e, e.c[0], &k, &o), CACHE_MISS);
    cr_assert_eq(do_store(&e, e.c[0], &k, 1), CACHE_OK);
    /* The value went to db 3. */
    redisContext *rc = sync_connect(&r);
    redisReply *rep = redisCommand(rc, "AUTH %s", "s3cret pass");
    freeReplyObject(rep);
    rep = redisCommand(rc, "SELECT 3");
    freeReplyObject(rep);
    rep = redisCommand(rc, "EXISTS %s", k.full);
    cr_assert_eq(rep->integer, 1);
    freeReplyObject(rep);
    redisFree(rc);
    /* The wrong password never becomes ready: calls are refused, not queued. */
    cr_assert_eq(cache_client_ready(e.c[1]), 0);
    cr_assert_eq(cache_lookup(e.c[1], &k, lookup_cb, &o, NULL), CACHE_EDOWN);
    cr_assert_gt(cache_client_counters(e.c[1]).errors, 0);
    cache_key_clear(&k);
    env_fini(&e);
    rs_cleanup(&r);
}

/* One bump may cover more tables than a key reads (a write of unknown tables bumps every legacy
   table of the tenant, 9 of them): every generation moves, also when the bump first fails and is
   retried from the bypass record. */
Test(redis, bump_more_tables_than_a_key_reads, .timeout = 30)
{
    need_redis();
    rs_t r = {0};
    rs_start(&r);
    env_t e;
    env_init(&e);
    e.c[0] = client_unix(&e, &r, "pgshim", 2, 50);
    cr_assert(wait_ready(&e, e.c[0], 2, 3000));
    enum { N = 12 };
    char names[N][16];
    const char *tabs[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "table%d", i);
        tabs[i] = names[i];
    }
    outcome_t o = {0};
    cr_assert_eq(cache_bump(e.c[0], "t", tabs, N, done_cb, &o), 0);
    cr_assert(run_until(&e, &o.fired, 2000));
    cr_assert_eq(o.status, CACHE_OK);
    cr_assert_eq(cache_bump(e.c[0], "t", tabs, CACHE_MAX_BUMP_TABLES + 1, NULL, NULL),
                 CACHE_EINVAL);

    rs_kill(&r);
    run_for(&e, 100);
    cr_assert_eq(cache_bump(e.c[0], "t", tabs, N, NULL, NULL), CACHE_EDOWN);
    cr_assert(cache_tenant_bypassed(e.c[0], "t"));
    rs_start(&r);  /* a fresh server: every generation starts from nothing again */
    cr_assert(wait_ready(&e, e.c[0], 2, 8000), "no reconnect after restart");
    uint64_t end = cache_now_ms() + 3000;
    while (cache_tenant_bypassed(e.c[0], "t") && cache_now_ms() < end)
        uv_run(&e.loop, UV_RUN_ONCE);
    cr_assert_not(cache_tenant_bypassed(e.c[0], "t"), "bypass of a %d-table bump not cleared", N);
    for (int i = 0; i < N; i++) {
        char *gk = cache_gen_key("pgshim", "t", tabs[i]);
        redisReply *rep = sync_cmd(&r, "GET %s", gk);
        cr_assert(rep && rep->type == REDIS_REPLY_STRING, "%s not bumped", gk);
        cr_assert_str_eq(rep->str, "1", "%s", gk);
        freeReplyObject(rep);
        free(gk);
    }
    env_fini(&e);
    rs_cleanup(&r);
}
