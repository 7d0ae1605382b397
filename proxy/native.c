/*
 * native.c: the non-blocking libpq connections behind native answers (see px_native.h).
 *
 * Each connection is driven by one uv_poll on PQsocket and one uv_timer: the poll follows what
 * libpq waits for (PQconnectPoll's READING/WRITING while logging in, readable plus writable while
 * PQflush has output left), the timer bounds the login and every query step. libpq never blocks:
 * the connection is in non-blocking mode and the socket is only read when the poll says so.
 *
 * Invariants: a connection is IDLE (on its group's conn list, no job), BUSY (exactly one job),
 * CONNECTING or CLOSING. A group's queue only holds jobs while every connection is busy or still
 * logging in. Connections are freed only after both libuv handles are closed (the poll is closed
 * before PQfinish closes the socket, as libuv requires). Logins use sslmode=disable and
 * gssencmode=disable so libpq never swaps the socket under the poll.
 */
#include "px_native.h"
#include "px_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int px_native_max_conns = 4;
uint64_t px_native_step_timeout_ms = 5000;
uint64_t px_native_butree_ttl_ms = 0;

/* ---------------------------------------------------------------------------------------------
 * In-memory data ("memos") per native database: the BU tree, the capability query's answer and
 * the group memberships. Each kind is built from one query and depends on a set of tables; see
 * the "Memos" section below for when it may be used.
 * ------------------------------------------------------------------------------------------- */
typedef enum memo_kind { MK_BUTREE, MK_CAPS, MK_GROUPS, MK__COUNT } memo_kind_t;

static void *mk_build_butree(const PGresult *r) { return rw_butree_build(r); }
static void mk_free_butree(void *o) { rw_butree_free(o); }
static size_t mk_size_butree(const void *o) { return rw_butree_size(o); }
static void *mk_build_caps(const PGresult *r) { return rw_capsmemo_build(r); }
static void mk_free_caps(void *o) { rw_capsmemo_free(o); }
static size_t mk_size_caps(const void *o) { return rw_capsmemo_size(o); }
static void *mk_build_groups(const PGresult *r) { return rw_groups_build(r); }
static void mk_free_groups(void *o) { rw_groups_free(o); }
static size_t mk_size_groups(const void *o) { return rw_groups_size(o); }

#define TBIT(t) ((rw_tableset_t)1u << RW_TABLE_##t)

static const struct memo_ops {
    const char *name;
    rw_tableset_t deps;          /* tables whose writes make it stale */
    const char *sql;
    void *(*build)(const PGresult *res);
    void (*free)(void *obj);
    size_t (*size)(const void *obj);
} memo_ops[MK__COUNT] = {
    [MK_BUTREE] = {"BU tree", TBIT(BT) | TBIT(TYPEASSIST), rw_butree_sql, mk_build_butree,
                   mk_free_butree, mk_size_butree},
    [MK_CAPS] = {"capability answer", TBIT(CAPABILITY), rw_capsmemo_sql, mk_build_caps,
                 mk_free_caps, mk_size_caps},
    [MK_GROUPS] = {"group memberships", TBIT(PGBELONGING), rw_groups_sql, mk_build_groups,
                   mk_free_groups, mk_size_groups},
};

rw_tableset_t px_native_reported_tables = TBIT(BT) | TBIT(TYPEASSIST);

/* A memo shared by the execs of one database; freed when dropped and no exec that was given it
   is still alive. */
typedef struct memo_holder {
    void *obj;
    memo_kind_t kind;
    int refs;
    bool dropped;
} memo_holder_t;

static void holder_release(memo_holder_t *h)
{
    if (h == NULL)
        return;
    if (--h->refs == 0 && h->dropped) {
        memo_ops[h->kind].free(h->obj);
        free(h);
    }
}

static void holder_drop(memo_holder_t *h)
{
    if (h == NULL)
        return;
    h->dropped = true;
    h->refs++;
    holder_release(h);
}

typedef struct memo_slot {
    memo_holder_t *h;            /* NULL: none usable */
    uint64_t built_at;           /* uv_now() when its query started */
    uint64_t gen;                /* bumped by every drop; a build that saw a bump is discarded */
    bool building;
} memo_slot_t;

typedef struct memo_writer {
    px_client_t *c;              /* only dereferenced after writer_alive() */
    uint64_t id;                 /* c->id when noted: a reused address is not the writer */
    px_pool_t *pool;             /* c->pool when noted (pools are never freed) */
    rw_tableset_t tables;        /* legacy tables its unfinished transaction may write */
} memo_writer_t;

/* After a failed login the group answers "unavailable" for this long instead of hammering the
   server with a connection attempt per call. */
#define NDB_RETRY_MS 1000

typedef struct px_ndb px_ndb_t;

typedef enum nc_state { NC_CONNECTING, NC_IDLE, NC_BUSY, NC_CLOSING } nc_state_t;

typedef struct px_nconn {
    px_list_t node;              /* db->conns */
    px_ndb_t *db;
    PGconn *pg;
    uv_poll_t poll;
    uv_timer_t timer;
    int handles_open;            /* poll and timer not yet closed */
    bool poll_started;
    int poll_events;
    nc_state_t state;
    px_native_job_t *job;
    bool preparing;              /* the step in flight is a PQsendPrepare */
    PGresult *res;               /* first result of the step in flight */
    char **prepared;             /* statement names prepared on this connection */
    size_t nprepared, capprepared;
} px_nconn_t;

struct px_native_job {
    px_list_t node;              /* db->queue while waiting */
    px_ndb_t *db;
    rw_exec_t *ex;               /* NULL for a job that builds a memo */
    memo_holder_t *holder;       /* memo handed to ex, released after ex is freed */
    memo_kind_t kind;            /* memo job: what it builds */
    uint64_t gen;                /* memo job: the slot's gen when it started */
    uint64_t started_at;         /* memo job: uv_now() when it was queued */
    px_native_done_cb cb;        /* NULL once abandoned */
    void *arg;
};

struct px_ndb {
    px_list_t node;              /* g_ndbs */
    char *host, *dbname, *user, *password;
    int port;
    px_list_t conns;
    int nconns;
    px_list_t queue;
    rw_dbinfo_t info;
    bool have_info;
    uint64_t retry_at;           /* uv_now() before which logins are not retried */
    /* optional in-memory data (native_butree_ttl > 0) */
    memo_slot_t memo[MK__COUNT];
    memo_writer_t *writers;      /* clients with an unfinished write to a memo's tables */
    size_t nwriters, capwriters;
};

static px_list_t g_ndbs = {&g_ndbs, &g_ndbs};
static int g_nconns;

static void nc_close(px_nconn_t *nc, const char *why);
static void nc_poll_cb(uv_poll_t *h, int status, int events);
static void db_dispatch(px_ndb_t *db);

/* ---------------------------------------------------------------------------------------------
 * Groups
 * ------------------------------------------------------------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Password for the native login: [databases] password=, else the auth file's plaintext, else a
   cleartext a client proved at login. md5 and SCRAM secrets cannot log in through libpq. */
static const char *pool_password(const px_pool_t *pool)
{
    if (pool->password != NULL && strncmp(pool->password, "md5", 3) != 0)
        return pool->password;
    px_user_t *u = px_userlist_find(pool->server_user);
    if (u != NULL && u->kind == PX_SECRET_PLAIN)
        return u->secret;
    if (u != NULL && u->proven_password != NULL)
        return u->proven_password;
    return NULL;
}

static px_ndb_t *db_get(const px_pool_t *pool)
{
    const char *host = pool->host != NULL ? pool->host : px_cfg->unix_socket_dir;
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_ndbs)
    {
        px_ndb_t *db = px_container_of(it, px_ndb_t, node);
        if (db->port == pool->port && str_eq(db->host, host) && str_eq(db->dbname, pool->server_db) &&
            str_eq(db->user, pool->server_user))
            return db;
    }
    px_ndb_t *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return NULL;
    db->host = host != NULL ? strdup(host) : NULL;
    db->dbname = strdup(pool->server_db);
    db->user = strdup(pool->server_user);
    db->port = pool->port;
    if ((host != NULL && db->host == NULL) || db->dbname == NULL || db->user == NULL) {
        free(db->host);
        free(db->dbname);
        free(db->user);
        free(db);
        return NULL;
    }
    px_list_init(&db->conns);
    px_list_init(&db->queue);
    px_list_append(&g_ndbs, &db->node);
    return db;
}

/* ---------------------------------------------------------------------------------------------
 * Jobs
 * ------------------------------------------------------------------------------------------- */

static void memo_job_done(px_native_job_t *job, const PGresult *res);

static void job_finish(px_native_job_t *job, rw_exec_status_t st, rw_reason_t reason)
{
    px_ndb_t *db = job->db;
    if (job->ex == NULL) {
        memo_job_done(job, NULL);
        return;
    }
    rw_dbinfo_t info;
    if (st == RW_EXEC_DONE && rw_exec_get_dbinfo(job->ex, &info) && info.valid &&
        (!db->have_info || (info.bulist_notice_learnt && !db->info.bulist_notice_learnt))) {
        db->info = info;
        db->have_info = true;
    }
    if (st == RW_EXEC_FALLBACK && reason == RW_REASON_NONE)
        reason = rw_exec_reason(job->ex);
    if (job->cb != NULL)
        job->cb(job->arg, job->ex, st, reason);
    rw_exec_free(job->ex);
    holder_release(job->holder);
    free(job);
}

/* ---------------------------------------------------------------------------------------------
 * Connections: poll and timer plumbing
 * ------------------------------------------------------------------------------------------- */

static void nc_handle_closed_cb(uv_handle_t *h)
{
    px_nconn_t *nc = h->data;
    if (--nc->handles_open > 0)
        return;
    if (nc->res != NULL)
        PQclear(nc->res);
    if (nc->pg != NULL)
        PQfinish(nc->pg);
    for (size_t i = 0; i < nc->nprepared; i++)
        free(nc->prepared[i]);
    free(nc->prepared);
    free(nc);
}

static void nc_set_poll(px_nconn_t *nc, int events)
{
    if (nc->poll_started && nc->poll_events == events)
        return;
    if (uv_poll_start(&nc->poll, events, nc_poll_cb) != 0) {
        nc_close(nc, "uv_poll_start failed");
        return;
    }
    nc->poll_started = true;
    nc->poll_events = events;
}

static void nc_timer_cb(uv_timer_t *t);

static void nc_arm_timer(px_nconn_t *nc)
{
    uv_timer_start(&nc->timer, nc_timer_cb, px_native_step_timeout_ms, 0);
}

/* Fails whatever the connection was doing and closes it; a queued job can use another one. */
static void nc_close(px_nconn_t *nc, const char *why)
{
    if (nc->state == NC_CLOSING)
        return;
    px_ndb_t *db = nc->db;
    bool was_login = nc->state == NC_CONNECTING;
    const char *pgerr = nc->pg != NULL ? PQerrorMessage(nc->pg) : "";
    px_log_warn("native %s/%s: closing connection: %s%s%.*s", db->dbname, db->user, why,
                pgerr[0] ? ": " : "", (int)strcspn(pgerr, "\n"), pgerr);
    nc->state = NC_CLOSING;
    px_list_del(&nc->node);
    db->nconns--;
    g_nconns--;
    px_native_job_t *job = nc->job;
    nc->job = NULL;
    uv_close((uv_handle_t *)&nc->poll, nc_handle_closed_cb);
    uv_close((uv_handle_t *)&nc->timer, nc_handle_closed_cb);
    if (job != NULL)
        job_finish(job, RW_EXEC_FALLBACK, RW_REASON_NATIVE_QUERY);
    if (was_login) {
        /* The server refuses us (or is down): jobs waiting for a login fall back now, and new
           calls pass through until the retry time. */
        db->retry_at = uv_now(px_loop) + NDB_RETRY_MS;
        if (db->nconns == 0) {
            while (!px_list_empty(&db->queue)) {
                px_native_job_t *j = px_container_of(px_list_first(&db->queue), px_native_job_t, node);
                px_list_del(&j->node);
                job_finish(j, RW_EXEC_FALLBACK, RW_REASON_NATIVE_QUERY);
            }
        }
    }
    db_dispatch(db);
}

/* ---------------------------------------------------------------------------------------------
 * Query steps
 * ------------------------------------------------------------------------------------------- */

static bool nc_is_prepared(const px_nconn_t *nc, const char *name)
{
    for (size_t i = 0; i < nc->nprepared; i++)
        if (strcmp(nc->prepared[i], name) == 0)
            return true;
    return false;
}

static void nc_add_prepared(px_nconn_t *nc, const char *name)
{
    if (nc->nprepared == nc->capprepared) {
        size_t n = nc->capprepared ? nc->capprepared * 2 : 16;
        char **p = realloc(nc->prepared, n * sizeof(char *));
        if (p == NULL)
            return;  /* only costs a re-prepare, which then fails and falls back once */
        nc->prepared = p;
        nc->capprepared = n;
    }
    char *copy = strdup(name);
    if (copy != NULL)
        nc->prepared[nc->nprepared++] = copy;
}

/* After a PQsend*: flush what fits, then wait for the answer (and for writability if output is
   left). */
static void nc_after_send(px_nconn_t *nc, int ok)
{
    if (!ok) {
        nc_close(nc, "sending a query failed");
        return;
    }
    int fl = PQflush(nc->pg);
    if (fl < 0) {
        nc_close(nc, "flushing a query failed");
        return;
    }
    nc_arm_timer(nc);
    nc_set_poll(nc, UV_READABLE | (fl == 1 ? UV_WRITABLE : 0));
}

static void nc_send_step(px_nconn_t *nc)
{
    rw_exec_t *ex = nc->job->ex;
    if (ex == NULL) {
        nc->preparing = false;
        nc_after_send(nc, PQsendQueryParams(nc->pg, memo_ops[nc->job->kind].sql, 0, NULL, NULL,
                                            NULL, NULL, 0));
        return;
    }
    const char *name = rw_exec_stmt_name(ex);
    int n = rw_exec_nparams(ex);
    const char *const *params = rw_exec_params(ex);
    int ok;
    if (name != NULL && !nc_is_prepared(nc, name)) {
        nc->preparing = true;
        ok = PQsendPrepare(nc->pg, name, rw_exec_sql(ex), n, NULL);
    } else if (name != NULL) {
        nc->preparing = false;
        ok = PQsendQueryPrepared(nc->pg, name, n, params, NULL, NULL, 0);
    } else {
        nc->preparing = false;
        ok = PQsendQueryParams(nc->pg, rw_exec_sql(ex), n, NULL, params, NULL, NULL, 0);
    }
    nc_after_send(nc, ok);
}

static void nc_start_job(px_nconn_t *nc, px_native_job_t *job)
{
    nc->job = job;
    nc->state = NC_BUSY;
    nc_send_step(nc);
}

/* The step's results are all in (PQgetResult returned NULL). */
static void nc_step_done(px_nconn_t *nc)
{
    PGresult *res = nc->res;
    nc->res = NULL;
    uv_timer_stop(&nc->timer);
    px_native_job_t *job = nc->job;
    if (job->ex == NULL) {
        nc->job = NULL;
        nc->state = NC_IDLE;
        nc_set_poll(nc, UV_READABLE);
        memo_job_done(job, res);
        if (res != NULL)
            PQclear(res);
        if (nc->state == NC_IDLE)
            db_dispatch(nc->db);
        return;
    }
    if (nc->preparing) {
        bool ok = res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK;
        if (res != NULL)
            PQclear(res);
        if (ok) {
            nc_add_prepared(nc, rw_exec_stmt_name(job->ex));
            nc->preparing = false;
            nc_send_step(nc);
            return;
        }
        res = NULL;  /* rw_exec_feed(NULL) turns into a fallback */
    }
    rw_exec_status_t st = rw_exec_feed(job->ex, res);
    if (res != NULL)
        PQclear(res);
    if (st == RW_EXEC_QUERY) {
        nc_send_step(nc);
        return;
    }
    nc->job = NULL;
    nc->state = NC_IDLE;
    nc_set_poll(nc, UV_READABLE);  /* notice a server that goes away while idle */
    job_finish(job, st, RW_REASON_NONE);
    if (nc->state == NC_IDLE)
        db_dispatch(nc->db);
}

static void nc_read(px_nconn_t *nc)
{
    if (!PQconsumeInput(nc->pg)) {
        nc_close(nc, "reading from the server failed");
        return;
    }
    if (nc->state != NC_BUSY) {
        /* An idle connection should hear nothing; a NOTICE is dropped, anything else (or EOF)
           means the session is not usable. */
        if (PQstatus(nc->pg) != CONNECTION_OK)
            nc_close(nc, "server closed an idle connection");
        return;
    }
    while (!PQisBusy(nc->pg)) {
        PGresult *r = PQgetResult(nc->pg);
        if (r == NULL) {
            nc_step_done(nc);
            return;
        }
        if (nc->res == NULL)
            nc->res = r;
        else
            PQclear(r);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Login
 * ------------------------------------------------------------------------------------------- */

static void nc_connect_step(px_nconn_t *nc)
{
    PostgresPollingStatusType ps = PQconnectPoll(nc->pg);
    switch (ps) {
    case PGRES_POLLING_READING:
        nc_set_poll(nc, UV_READABLE);
        return;
    case PGRES_POLLING_WRITING:
        nc_set_poll(nc, UV_WRITABLE);
        return;
    case PGRES_POLLING_OK: {
        if (PQsetnonblocking(nc->pg, 1) != 0) {
            nc_close(nc, "cannot make the connection non-blocking");
            return;
        }
        uv_timer_stop(&nc->timer);
        px_ndb_t *db = nc->db;
        db->retry_at = 0;
        nc->state = NC_IDLE;
        px_log_debug("native %s/%s: connection ready", db->dbname, db->user);
        nc_set_poll(nc, UV_READABLE);
        db_dispatch(db);
        return;
    }
    default:
        nc_close(nc, "login failed");
        return;
    }
}

static void nc_poll_cb(uv_poll_t *h, int status, int events)
{
    px_nconn_t *nc = h->data;
    if (nc->state == NC_CLOSING)
        return;
    if (status < 0) {
        nc_close(nc, "socket error");
        return;
    }
    if (nc->state == NC_CONNECTING) {
        nc_connect_step(nc);
        return;
    }
    if (events & UV_WRITABLE) {
        int fl = PQflush(nc->pg);
        if (fl < 0) {
            nc_close(nc, "flushing a query failed");
            return;
        }
        if (fl == 0)
            nc_set_poll(nc, UV_READABLE);
    }
    if (nc->state != NC_CLOSING && (events & UV_READABLE))
        nc_read(nc);
}

static void nc_timer_cb(uv_timer_t *t)
{
    px_nconn_t *nc = t->data;
    nc_close(nc, nc->state == NC_CONNECTING ? "login timed out" : "query timed out");
}

/* Notices go to the exec whose query raised them (only fn_get_bulist's probe expects one); libpq's
   default would print them on stderr. */
static void nc_notice_rx(void *arg, const PGresult *res)
{
    px_nconn_t *nc = arg;
    if (nc->job == NULL || nc->job->ex == NULL)
        return;
    rw_notice_t n = rw_notice_from_result(res);
    rw_exec_notice(nc->job->ex, &n);
}

/* "-c name=value" for each native setting, with spaces and backslashes escaped as libpq's
   `options` parser expects. client_encoding goes in its own keyword. */
static char *native_options(void)
{
    size_t cap = 1024, len = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    out[0] = '\0';
    for (int i = 0; rw_native_settings[i][0] != NULL; i++) {
        const char *name = rw_native_settings[i][0], *value = rw_native_settings[i][1];
        if (strcmp(name, "client_encoding") == 0)
            continue;
        size_t need = len + strlen(name) + 2 * strlen(value) + 8;
        if (need >= cap) {
            cap = need * 2;
            char *p = realloc(out, cap);
            if (p == NULL) {
                free(out);
                return NULL;
            }
            out = p;
        }
        len += (size_t)sprintf(out + len, "%s-c %s=", len ? " " : "", name);
        for (const char *v = value; *v; v++) {
            if (*v == ' ' || *v == '\\')
                out[len++] = '\\';
            out[len++] = *v;
        }
        out[len] = '\0';
    }
    return out;
}

static void db_launch(px_ndb_t *db)
{
    char port[16], timeout[24];
    snprintf(port, sizeof(port), "%d", db->port);
    snprintf(timeout, sizeof(timeout), "%llu",
             (unsigned long long)(px_native_step_timeout_ms + 999) / 1000);
    char *opts = native_options();
    const char *keys[] = {"host", "port", "dbname", "user", "password", "options",
                          "client_encoding", "application_name", "sslmode", "gssencmode",
                          "connect_timeout", NULL};
    const char *vals[] = {db->host, port, db->dbname, db->user, db->password, opts ? opts : "",
                          "UTF8", "pgshim-native", "disable", "disable", timeout, NULL};
    px_nconn_t *nc = calloc(1, sizeof(*nc));
    if (nc == NULL || opts == NULL) {
        free(nc);
        free(opts);
        return;
    }
    nc->pg = PQconnectStartParams(keys, vals, 0);
    free(opts);
    nc->db = db;
    nc->state = NC_CONNECTING;
    px_list_append(&db->conns, &nc->node);
    db->nconns++;
    g_nconns++;
    nc->poll.data = nc;
    nc->timer.data = nc;
    uv_timer_init(px_loop, &nc->timer);
    uv_unref((uv_handle_t *)&nc->timer);  /* native connections never keep pgshim running */
    nc->handles_open = 2;
    int fd = nc->pg != NULL ? PQsocket(nc->pg) : -1;
    if (nc->pg == NULL || PQstatus(nc->pg) == CONNECTION_BAD || fd < 0 ||
        uv_poll_init(px_loop, &nc->poll, fd) != 0) {
        /* The poll handle was never initialised: close the timer only. */
        nc->handles_open = 1;
        nc->state = NC_CLOSING;
        px_list_del(&nc->node);
        db->nconns--;
        g_nconns--;
        db->retry_at = uv_now(px_loop) + NDB_RETRY_MS;
        px_log_warn("native %s/%s: cannot start a connection: %s", db->dbname, db->user,
                    nc->pg ? PQerrorMessage(nc->pg) : "out of memory");
        uv_close((uv_handle_t *)&nc->timer, nc_handle_closed_cb);
        return;
    }
    uv_unref((uv_handle_t *)&nc->poll);
    PQsetNoticeReceiver(nc->pg, nc_notice_rx, nc);
    nc_arm_timer(nc);
    nc_set_poll(nc, UV_WRITABLE);  /* PQconnectStart's first wait is for the connect */
}

/* Gives waiting jobs to idle connections and opens connections for the rest. */
static void db_dispatch(px_ndb_t *db)
{
    while (!px_list_empty(&db->queue)) {
        px_nconn_t *idle = NULL;
        px_list_t *it, *tmp;
        px_list_foreach_safe(it, tmp, &db->conns)
        {
            px_nconn_t *nc = px_container_of(it, px_nconn_t, node);
            if (nc->state == NC_IDLE) {
                idle = nc;
                break;
            }
        }
        if (idle == NULL)
            break;
        px_native_job_t *job = px_container_of(px_list_first(&db->queue), px_native_job_t, node);
        px_list_del(&job->node);
        nc_start_job(idle, job);
    }
    if (px_list_empty(&db->queue) || px_shutting_down)
        return;
    size_t waiting = px_list_count(&db->queue);
    size_t connecting = 0;
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &db->conns)
    {
        if (px_container_of(it, px_nconn_t, node)->state == NC_CONNECTING)
            connecting++;
    }
    while (connecting < waiting && db->nconns < px_native_max_conns &&
           uv_now(px_loop) >= db->retry_at) {
        int before = db->nconns;
        db_launch(db);
        if (db->nconns == before)
            break;
        connecting++;
    }
    if (db->nconns == 0) {
        /* Nothing could be opened: nobody would ever serve the queue. */
        while (!px_list_empty(&db->queue)) {
            px_native_job_t *j = px_container_of(px_list_first(&db->queue), px_native_job_t, node);
            px_list_del(&j->node);
            job_finish(j, RW_EXEC_FALLBACK, RW_REASON_NATIVE_QUERY);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Memos: each kind is built from its query on a native connection and used by the execs that
 * read it while it is younger than native_butree_ttl and no write to one of its tables that went
 * through pgshim may have committed since its query started. A client that sends such a write is
 * a "writer" of those tables until its transaction is over (its server said 'I' with nothing
 * pending, or it has no server): while a writer of a memo's tables exists the memo is neither
 * used nor built, and every change of the writer set drops it. A kind is only held at all when
 * intercept.c reports writes to all of its tables (px_native_reported_tables). Writes that bypass
 * pgshim are bounded by the TTL, or dropped earlier by px_native_tables_changed. A memo is
 * rebuilt in the background once it is half its TTL old, so a steady load never waits for one.
 * ------------------------------------------------------------------------------------------- */

static void memo_drop(px_ndb_t *db, memo_kind_t k)
{
    memo_slot_t *m = &db->memo[k];
    m->gen++;
    holder_drop(m->h);
    m->h = NULL;
}

/* Drops every memo of db that depends on one of `tables`. */
static void memos_drop(px_ndb_t *db, rw_tableset_t tables)
{
    for (int k = 0; k < MK__COUNT; k++)
        if ((memo_ops[k].deps & tables) != 0)
            memo_drop(db, (memo_kind_t)k);
}

/* True while the writer is still a logged-in client of its pool. intercept.c reports the end
   of a client (px_native_client_gone) only for clients it keeps state for, and a client that
   only ever wrote may have none; so a writer is found on its pool's client lists before it is
   dereferenced. One that is gone (or closing) ended its transaction with it. */
static bool writer_alive(const memo_writer_t *w)
{
    px_list_t *lists[] = {&w->pool->wait_login, &w->pool->active_clients, &w->pool->waiting_clients};
    for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
        px_list_t *it, *tmp;
        px_list_foreach_safe(it, tmp, lists[l])
        {
            const px_client_t *c = px_container_of(it, px_client_t, node);
            if (c == w->c && c->id == w->id)
                return true;
        }
    }
    return false;
}

/* Forgets writers whose transaction is over (dropping the memos of their tables); true when no
   writer of `deps` is left. */
static bool writers_settled(px_ndb_t *db, rw_tableset_t deps)
{
    bool clear = true;
    for (size_t i = 0; i < db->nwriters;) {
        bool over = !writer_alive(&db->writers[i]);
        if (!over) {
            const px_client_t *c = db->writers[i].c;
            const px_server_t *s = c->server;
            /* Without a server the write is over only if nothing of it waits in the client's
               input (a client queued for a server still holds its statement). */
            over = s == NULL ? c->state == PX_CL_ACTIVE && c->io.rlen == 0 && c->msg_left == 0
                             : s->last_status == (uint8_t)'I' && s->pending == 0 && !s->unsynced &&
                                   s->msg_left == 0 && c->msg_left == 0;
        }
        if (over) {
            rw_tableset_t t = db->writers[i].tables;
            db->writers[i] = db->writers[--db->nwriters];
            memos_drop(db, t);  /* the write may have committed just now */
            continue;
        }
        if ((db->writers[i].tables & deps) != 0)
            clear = false;
        i++;
    }
    return clear;
}

static void memo_job_done(px_native_job_t *job, const PGresult *res)
{
    px_ndb_t *db = job->db;
    const struct memo_ops *ops = &memo_ops[job->kind];
    memo_slot_t *m = &db->memo[job->kind];
    m->building = false;
    bool settled = writers_settled(db, ops->deps);
    if (res != NULL && job->gen == m->gen && settled) {
        void *obj = ops->build(res);
        memo_holder_t *h = obj != NULL ? calloc(1, sizeof(*h)) : NULL;
        if (h != NULL) {
            memo_drop(db, job->kind);
            h->obj = obj;
            h->kind = job->kind;
            m->h = h;
            m->built_at = job->started_at;
            px_log_debug("native %s/%s: %s built (%zu bytes)", db->dbname, db->user, ops->name,
                         ops->size(obj));
        } else if (obj != NULL) {
            ops->free(obj);
        }
    }
    free(job);
}

static void memo_start_build(px_ndb_t *db, memo_kind_t k)
{
    px_native_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return;
    job->db = db;
    job->kind = k;
    job->gen = db->memo[k].gen;
    job->started_at = uv_now(px_loop);
    px_list_init(&job->node);
    db->memo[k].building = true;
    px_list_append(&db->queue, &job->node);
    db_dispatch(db);
}

/* The memo of kind k to hand to an exec, or NULL (and maybe a build started). */
static memo_holder_t *memo_for_exec(px_ndb_t *db, memo_kind_t k)
{
    const struct memo_ops *ops = &memo_ops[k];
    if (px_native_butree_ttl_ms == 0 || (ops->deps & ~px_native_reported_tables) != 0 ||
        !writers_settled(db, ops->deps))
        return NULL;
    memo_slot_t *m = &db->memo[k];
    uint64_t now = uv_now(px_loop);
    if (m->h != NULL && now - m->built_at >= px_native_butree_ttl_ms)
        memo_drop(db, k);
    bool stale_soon = m->h == NULL || now - m->built_at >= px_native_butree_ttl_ms / 2;
    if (stale_soon && !m->building && (db->nconns > 0 || now >= db->retry_at))
        memo_start_build(db, k);
    return m->h;
}

static void note_writes(px_ndb_t *db, px_pool_t *pool, px_client_t *c, rw_tableset_t tables)
{
    memos_drop(db, tables);
    for (size_t i = 0; i < db->nwriters; i++) {
        if (db->writers[i].c == c && db->writers[i].id == c->id) {
            db->writers[i].tables |= tables;
            return;
        }
    }
    if (db->nwriters == db->capwriters) {
        size_t n = db->capwriters ? db->capwriters * 2 : 8;
        memo_writer_t *p = realloc(db->writers, n * sizeof(*p));
        if (p == NULL) {
            /* Cannot track the writer: stop using memos until restart (or reload) rather than
               risk a stale one. */
            px_native_butree_ttl_ms = 0;
            return;
        }
        db->writers = p;
        db->capwriters = n;
    }
    db->writers[db->nwriters].c = c;
    db->writers[db->nwriters].id = c->id;
    db->writers[db->nwriters].pool = c->pool != NULL ? c->pool : pool;
    db->writers[db->nwriters].tables = tables;
    db->nwriters++;
}

void px_native_note_writes(px_pool_t *pool, px_client_t *c, rw_tableset_t tables)
{
    if (tables == 0)
        return;
    px_ndb_t *db = db_get(pool);
    if (db == NULL) {
        px_native_butree_ttl_ms = 0;  /* cannot record it: no memo may be trusted */
        return;
    }
    note_writes(db, pool, c, tables);
}

void px_native_note_write(px_pool_t *pool, px_client_t *c)
{
    px_native_note_writes(pool, c, TBIT(BT) | TBIT(TYPEASSIST));
}

void px_native_client_gone(px_client_t *c)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_ndbs)
    {
        px_ndb_t *db = px_container_of(it, px_ndb_t, node);
        for (size_t i = 0; i < db->nwriters; i++) {
            if (db->writers[i].c == c) {
                rw_tableset_t t = db->writers[i].tables;
                db->writers[i] = db->writers[--db->nwriters];
                memos_drop(db, t);
                break;
            }
        }
    }
}

void px_native_tables_changed(const char *dbname, uint32_t tables)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_ndbs)
    {
        px_ndb_t *db = px_container_of(it, px_ndb_t, node);
        if (dbname == NULL || str_eq(db->dbname, dbname))
            memos_drop(db, (rw_tableset_t)tables);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Public
 * ------------------------------------------------------------------------------------------- */

int px_native_run(px_pool_t *pool, rw_fn_t fn, rw_exec_t *ex, px_native_done_cb cb, void *arg,
                  px_native_job_t **jobp, rw_exec_status_t *st, rw_reason_t *reason)
{
    rw_family_t fam = rw_fn_family(fn);
    *jobp = NULL;
    px_ndb_t *db = db_get(pool);
    if (db == NULL) {
        rw_exec_free(ex);
        *reason = RW_REASON_NOMEM;
        return -1;
    }
    const char *pw = pool_password(pool);
    if (pw == NULL) {
        rw_exec_free(ex);
        *reason = RW_REASON_NATIVE_QUERY;
        return -1;
    }
    if (!str_eq(db->password, pw)) {
        char *copy = strdup(pw);
        if (copy == NULL) {
            rw_exec_free(ex);
            *reason = RW_REASON_NOMEM;
            return -1;
        }
        free(db->password);
        db->password = copy;
    }
    if (db->have_info)
        rw_exec_set_dbinfo(ex, &db->info);
    memo_holder_t *holder = NULL;
    if (fam == RW_FAM_BU && (holder = memo_for_exec(db, MK_BUTREE)) != NULL)
        rw_exec_set_butree(ex, holder->obj);
    else if (fn == RW_FN_WEB_CAPS_FOR_CLIENT && (holder = memo_for_exec(db, MK_CAPS)) != NULL)
        rw_exec_set_capsmemo(ex, holder->obj);
    else if ((fn == RW_FN_GETJOBNEED || fn == RW_FN_GETEXTTOURJOBNEED) &&
             (holder = memo_for_exec(db, MK_GROUPS)) != NULL)
        rw_exec_set_groups(ex, holder->obj);
    if (holder != NULL)
        holder->refs++;
    rw_exec_status_t s = rw_exec_start(ex);
    if (s != RW_EXEC_QUERY) {
        /* Answered without a query: the caller frees ex before anything could drop the memo
           (no callback runs in between), so the reference can go now. */
        holder_release(holder);
        *st = s;
        *reason = s == RW_EXEC_FALLBACK ? rw_exec_reason(ex) : RW_REASON_NONE;
        return 1;
    }
    if (db->nconns == 0 && uv_now(px_loop) < db->retry_at) {
        rw_exec_free(ex);
        holder_release(holder);
        *reason = RW_REASON_NATIVE_QUERY;
        return -1;
    }
    px_native_job_t *job = calloc(1, sizeof(*job));
    if (job == NULL) {
        rw_exec_free(ex);
        holder_release(holder);
        *reason = RW_REASON_NOMEM;
        return -1;
    }
    job->db = db;
    job->ex = ex;
    job->holder = holder;
    job->cb = cb;
    job->arg = arg;
    px_list_init(&job->node);
    *jobp = job;
    /* Queue first and dispatch: an idle connection takes it at once, but its callback can only
       fire after a poll event, never from inside this call. */
    px_list_append(&db->queue, &job->node);
    db_dispatch(db);
    return 0;
}

void px_native_abandon(px_native_job_t *job)
{
    if (job != NULL)
        job->cb = NULL;
}

int px_native_nconns(void) { return g_nconns; }

void px_native_shutdown(void)
{
    px_list_t *it, *tmp, *cn, *ctmp;
    px_list_foreach_safe(it, tmp, &g_ndbs)
    {
        px_ndb_t *db = px_container_of(it, px_ndb_t, node);
        while (!px_list_empty(&db->queue)) {
            px_native_job_t *j = px_container_of(px_list_first(&db->queue), px_native_job_t, node);
            px_list_del(&j->node);
            j->cb = NULL;
            job_finish(j, RW_EXEC_FALLBACK, RW_REASON_NATIVE_QUERY);
        }
        px_list_foreach_safe(cn, ctmp, &db->conns)
        {
            px_nconn_t *nc = px_container_of(cn, px_nconn_t, node);
            if (nc->job != NULL)
                nc->job->cb = NULL;
            nc_close(nc, "shutting down");
        }
        for (int k = 0; k < MK__COUNT; k++)
            memo_drop(db, (memo_kind_t)k);
        free(db->writers);
        px_list_del(&db->node);
        free(db->host);
        free(db->dbname);
        free(db->user);
        if (db->password != NULL)
            memset(db->password, 0, strlen(db->password));
        free(db->password);
        free(db);
    }
}
