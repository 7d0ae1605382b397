/*
 * Pools keyed by (database, user): creation from the [databases] entry, assigning servers to
 * waiting clients in FIFO order, releasing them at the end of a transaction (transaction mode)
 * or of the client (session mode), and re-setting session parameters when a server changes
 * client.
 *
 * Invariants: nservers counts servers on the pool's login/idle/active/used lists and never
 * exceeds pool_size + reserve_pool (the reserve only once a client waited reserve_pool_timeout);
 * the servers of all pools of one database never exceed max_db_connections, those of one user
 * max_user_connections. A server goes back to the idle list only through px_pool_server_ready(),
 * i.e. after login or after a successful reset or check query, or directly at a clean
 * transaction end; an idle server unused for server_check_delay runs server_check_query before
 * a client gets it.
 */
#include "px_proxy.h"
#include "px_admin.h"
#include "px_dbstats.h"
#include "px_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------------------------------------
 * Tracked variables
 * ------------------------------------------------------------------------------------------- */

static const char *const var_names[PX_VAR__COUNT] = {
    "client_encoding", "DateStyle", "TimeZone", "IntervalStyle", "standard_conforming_strings",
    "application_name",
};

int px_var_lookup(const char *name, size_t len)
{
    for (int i = 0; i < PX_VAR__COUNT; i++)
        if (strlen(var_names[i]) == len && strncasecmp(var_names[i], name, len) == 0)
            return i;
    return -1;
}

const char *px_var_name(px_var_t v) { return var_names[v]; }

void px_vars_set(px_vars_t *vars, px_var_t v, const char *value, size_t len)
{
    char *copy = strndup(value, len);
    if (copy == NULL)
        return;  /* keeps the old value: at worst one extra SET later */
    free(vars->v[v]);
    vars->v[v] = copy;
}

void px_vars_free(px_vars_t *vars)
{
    for (int i = 0; i < PX_VAR__COUNT; i++) {
        free(vars->v[i]);
        vars->v[i] = NULL;
    }
}

/* Appends `SET name TO 'value';` with the value quoted for either setting of
 * standard_conforming_strings (an E'' literal when it holds a backslash). */
static bool append_set(char **sql, size_t *len, size_t *cap, const char *name, const char *value)
{
    size_t need = *len + strlen(name) + 2 * strlen(value) + 32;
    if (need > *cap) {
        size_t nc = need * 2;
        char *p = realloc(*sql, nc);
        if (p == NULL)
            return false;
        *sql = p;
        *cap = nc;
    }
    char *o = *sql + *len;
    bool esc = strchr(value, '\\') != NULL;
    o += sprintf(o, "SET %s TO %s'", name, esc ? "E" : "");
    for (const char *v = value; *v; v++) {
        if (*v == '\'' || *v == '\\')
            *o++ = *v;
        *o++ = *v;
    }
    o += sprintf(o, "';");
    *len = (size_t)(o - *sql);
    return true;
}

/* Builds one Query that brings the server's settings to the client's; NULL if none differ. */
static char *build_var_sync(px_server_t *s, px_client_t *c)
{
    char *sql = NULL;
    size_t len = 0, cap = 0;
    for (int v = 0; v < PX_VAR__COUNT; v++) {
        const char *want = c->vars.v[v];
        if (want == NULL || (s->vars.v[v] != NULL && strcmp(want, s->vars.v[v]) == 0))
            continue;
        if (!append_set(&sql, &len, &cap, var_names[v], want)) {
            free(sql);
            return NULL;
        }
        s->set_vars[v] = true;
    }
    return sql;
}

/* ---------------------------------------------------------------------------------------------
 * Pool lookup
 * ------------------------------------------------------------------------------------------- */

int px_pool_mode(const px_pool_t *pool) { return pool->pool_mode; }

static void pool_init_lists(px_pool_t *p)
{
    px_list_init(&p->login_servers);
    px_list_init(&p->idle_servers);
    px_list_init(&p->active_servers);
    px_list_init(&p->used_servers);
    px_list_init(&p->wait_login);
    px_list_init(&p->active_clients);
    px_list_init(&p->waiting_clients);
}

static int effective_pool_mode(const px_db_conf_t *db, const char *user)
{
    const px_user_conf_t *u = px_config_find_user(px_cfg, user);
    if (u != NULL && u->pool_mode != PX_POOL_INHERIT)
        return u->pool_mode;
    if (db->pool_mode != PX_POOL_INHERIT)
        return db->pool_mode;
    return px_cfg->pool_mode;
}

static bool str_changed(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0);
}

/* Replaces *slot with a copy of v (NULL stays NULL); returns true if the value changed. */
static bool set_str(char **slot, const char *v)
{
    if (!str_changed(*slot, v))
        return false;
    free(*slot);
    *slot = v != NULL ? strdup(v) : NULL;
    return true;
}

/* Copies the [databases] entry's settings into the pool. Returns true when anything that a
 * server connection was opened with changed, so existing servers must not be reused. */
static bool pool_apply_conf(px_pool_t *p, const px_db_conf_t *db)
{
    bool changed = false;
    const char *host = db->host != NULL && db->host[0] != '\0' ? db->host : NULL;
    int port = db->port > 0 ? db->port : 5432;
    changed |= set_str(&p->host, host);
    changed |= port != p->port;
    p->port = port;
    changed |= set_str(&p->server_db, db->dbname != NULL ? db->dbname : p->dbname);
    changed |= set_str(&p->server_user, db->user != NULL ? db->user : p->user);
    changed |= set_str(&p->password, db->password);
    const char *extra[4][2] = {{"client_encoding", db->client_encoding},
                               {"datestyle", db->datestyle},
                               {"timezone", db->timezone},
                               {"application_name", db->application_name}};
    for (int i = 0; i < 4; i++) {
        if (p->startup_extra[i][0] == NULL)
            p->startup_extra[i][0] = strdup(extra[i][0]);
        changed |= set_str(&p->startup_extra[i][1], extra[i][1]);
    }
    p->pool_size = db->pool_size > 0 ? db->pool_size : px_cfg->default_pool_size;
    p->pool_mode = effective_pool_mode(db, p->user);
    p->min_pool_size = db->min_pool_size >= 0 ? db->min_pool_size : px_cfg->min_pool_size;
    p->reserve_pool = db->reserve_pool >= 0 ? db->reserve_pool : px_cfg->reserve_pool_size;
    p->max_db_connections =
        db->max_db_connections >= 0 ? db->max_db_connections : px_cfg->max_db_connections;
    const px_user_conf_t *u = px_config_find_user(px_cfg, p->user);
    p->max_user_connections = u != NULL && u->max_user_connections >= 0
                                  ? u->max_user_connections
                                  : px_cfg->max_user_connections;
    return changed;
}

static px_pool_t *pool_create(const px_db_conf_t *db, const char *dbname, const char *user)
{
    px_pool_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    pool_init_lists(p);
    p->dbname = strdup(dbname);
    p->user = strdup(user);
    if (p->dbname == NULL || p->user == NULL) {
        px_log_error("out of memory creating pool");
        return NULL;  /* leaked on purpose: only under memory exhaustion */
    }
    (void)pool_apply_conf(p, db);
    p->stats = px_dbstats_get(dbname);
    if (p->server_db == NULL || p->server_user == NULL) {
        px_log_error("out of memory creating pool");
        return NULL;
    }
    px_list_append(&g_pools, &p->node);
    px_log_debug("new pool %s/%s -> %s:%d db=%s user=%s size=%d mode=%s", dbname, user,
                 p->host ? p->host : px_cfg->unix_socket_dir, p->port, p->server_db,
                 p->server_user, p->pool_size, px_pool_mode_name(p->pool_mode));
    return p;
}

void px_pool_reload_all(void)
{
    px_list_t *it, *tmp, *sn, *stmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        px_pool_t *p = px_container_of(it, px_pool_t, node);
        const px_db_conf_t *db = px_config_find_db(px_cfg, p->dbname);
        if (db == NULL) {
            px_log_warn("reload: database %s is no longer configured; its pool keeps running "
                        "until restart", p->dbname);
            continue;
        }
        if (!pool_apply_conf(p, db))
            continue;
        /* New connection settings: idle servers go now, busy ones when their client is done. */
        p->conf_gen++;
        px_log_info("reload: pool %s/%s now connects to %s:%d db=%s user=%s", p->dbname, p->user,
                    p->host ? p->host : px_cfg->unix_socket_dir, p->port, p->server_db,
                    p->server_user);
        px_list_foreach_safe(sn, stmp, &p->idle_servers)
        {
            px_server_close(px_container_of(sn, px_server_t, node), "database settings changed");
        }
    }
}

px_pool_t *px_pool_get(const char *dbname, const char *user, const char **err)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        px_pool_t *p = px_container_of(it, px_pool_t, node);
        if (strcmp(p->dbname, dbname) == 0 && strcmp(p->user, user) == 0)
            return p;
    }
    const px_db_conf_t *db = px_config_find_db(px_cfg, dbname);
    if (db == NULL) {
        static char buf[256];
        snprintf(buf, sizeof(buf), "no such database: %s", dbname);
        *err = buf;
        return NULL;
    }
    px_pool_t *p = pool_create(db, dbname, user);
    if (p == NULL)
        *err = "out of memory";
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Assignment
 * ------------------------------------------------------------------------------------------- */

static uint64_t ms(double secs) { return (uint64_t)(secs * 1000.0); }

/* How long the longest-waiting client of the pool has waited, in ms (0 if none waits). */
static uint64_t longest_wait(px_pool_t *pool, uint64_t now)
{
    uint64_t w = 0;
    px_list_t *n = px_list_first(&pool->waiting_clients);
    if (n != NULL)
        w = now - px_container_of(n, px_client_t, node)->state_since;
    n = px_list_first(&pool->wait_login);
    if (n != NULL && now - px_container_of(n, px_client_t, node)->state_since > w)
        w = now - px_container_of(n, px_client_t, node)->state_since;
    return w;
}

/* Servers of every pool that shares the database (by_db) or the user with `pool`. */
static int shared_count(const px_pool_t *pool, bool by_db)
{
    int n = 0;
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        const px_pool_t *p = px_container_of(it, px_pool_t, node);
        if (strcmp(by_db ? p->dbname : p->user, by_db ? pool->dbname : pool->user) == 0)
            n += p->nservers;
    }
    return n;
}

/* Closes one idle server of another pool of the same database (or user) so that a pool with
 * waiting clients can open one within max_db_connections / max_user_connections, as
 * PgBouncer's eviction does. Returns true if one was closed. */
static bool evict_sibling(const px_pool_t *pool, bool by_db)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        px_pool_t *p = px_container_of(it, px_pool_t, node);
        if (p == pool || px_list_empty(&p->idle_servers) ||
            strcmp(by_db ? p->dbname : p->user, by_db ? pool->dbname : pool->user) != 0)
            continue;
        px_server_close(px_container_of(px_list_first(&p->idle_servers), px_server_t, node),
                        by_db ? "evicted for max_db_connections" : "evicted for max_user_connections");
        return true;
    }
    return false;
}

/* Server connections the pool may open now. Eviction of a sibling's idle server only for
 * clients that wait, never to reach min_pool_size (two pools would take turns forever). */
static int server_budget(px_pool_t *pool, bool may_evict)
{
    uint64_t now = uv_now(px_loop);
    int limit = pool->pool_size;
    if (pool->reserve_pool > 0 && longest_wait(pool, now) >= ms(px_cfg->reserve_pool_timeout))
        limit += pool->reserve_pool;
    int budget = limit - pool->nservers;
    if (budget <= 0)
        return 0;
    if (pool->max_db_connections > 0) {
        int room = pool->max_db_connections - shared_count(pool, true);
        if (room <= 0 && may_evict && evict_sibling(pool, true))
            room = pool->max_db_connections - shared_count(pool, true);
        if (room < budget)
            budget = room;
    }
    if (pool->max_user_connections > 0 && budget > 0) {
        int room = pool->max_user_connections - shared_count(pool, false);
        if (room <= 0 && may_evict && evict_sibling(pool, false))
            room = pool->max_user_connections - shared_count(pool, false);
        if (room < budget)
            budget = room;
    }
    return budget > 0 ? budget : 0;
}

/* While logins to PostgreSQL fail, retry once per server_login_retry instead of spinning. */
static bool login_retry_wait(const px_pool_t *pool)
{
    return pool->last_connect_failed &&
           uv_now(px_loop) - pool->last_failed_login < ms(px_cfg->server_login_retry);
}

static void launch_if_needed(px_pool_t *pool)
{
    /* The common case under load: the pool is full; skip counting the queues. */
    if (pool->nservers >= pool->pool_size + (pool->reserve_pool > 0 ? pool->reserve_pool : 0))
        return;
    if (pool->nservers >= pool->pool_size &&
        longest_wait(pool, uv_now(px_loop)) < ms(px_cfg->reserve_pool_timeout))
        return;
    size_t want = px_list_count(&pool->waiting_clients) + px_list_count(&pool->wait_login);
    size_t logging_in = px_list_count(&pool->login_servers);
    if (logging_in >= want || login_retry_wait(pool))
        return;
    int budget = server_budget(pool, true);
    if (budget > 0 && pool->nservers >= pool->pool_size)
        px_log_info("%s/%s: taking connection from reserve_pool", pool->dbname, pool->user);
    /* While logins fail, one probe at a time: its outcome decides about the rest. */
    if (pool->last_connect_failed && budget > 1)
        budget = logging_in == 0 ? 1 : 0;
    while (logging_in < want && budget-- > 0) {
        px_server_launch(pool);
        logging_in++;
    }
}

/* server_check_delay/server_check_query: a server idle for longer than the delay (with a delay
 * of 0: any server that served a client since its last check) runs the check query before
 * being handed out; it comes back through px_pool_server_ready() or is closed if it fails. */
static bool needs_check(const px_server_t *s, uint64_t now)
{
    const char *q = px_cfg->server_check_query;
    if (q == NULL || q[0] == '\0')
        return false;
    if (px_cfg->server_check_delay <= 0)
        return s->checked_at < s->state_since;
    return now - s->state_since >= ms(px_cfg->server_check_delay);
}

/* The idle server to hand out next: the most recently used one (LIFO keeps the hottest
 * connection busy and lets the others reach server_idle_timeout), or with server_round_robin
 * the least recently used one, spreading load evenly (NULL when none is idle). */
static px_server_t *next_idle(px_pool_t *pool)
{
    if (px_list_empty(&pool->idle_servers))
        return NULL;
    px_list_t *n = px_cfg->server_round_robin ? pool->idle_servers.next : pool->idle_servers.prev;
    return px_container_of(n, px_server_t, node);
}

static void start_check(px_server_t *s)
{
    s->checking = true;
    px_server_set_state(s, PX_SV_USED);
    px_server_internal_query(s, px_cfg->server_check_query);
}

/* Links a waiting client with an idle server, sending a SET first when their settings differ. */
static void link_pair(px_client_t *c, px_server_t *s)
{
    c->server = s;
    s->client = c;
    s->pending = 0;
    s->unsynced = false;
    s->copy_in = false;
    s->syncs_since_exec = 0;
    s->ready_since = uv_now(px_loop);
    s->msg_left = 0;
    s->ps_swallowing = false;
    c->msg_left = 0;
    px_server_set_state(s, PX_SV_ACTIVE);
    char *sql = build_var_sync(s, c);
    if (sql != NULL) {
        s->setting_vars = true;
        px_server_internal_query(s, sql);
        free(sql);
        if (s->state == PX_SV_CLOSING)
            return;  /* the client was told and closed with it */
        px_client_set_state(c, PX_CL_ACTIVE);
        px_server_update_reading(s);
        return;
    }
    px_client_set_state(c, PX_CL_ACTIVE);
    px_server_update_reading(s);
    px_client_resume(c);
}

void px_pool_dispatch(px_pool_t *pool)
{
    if (px_admin_db_paused(pool->dbname))
        return;   /* PAUSE: clients stay queued until RESUME dispatches again */
    for (;;) {
        px_list_t *cn = px_list_first(&pool->waiting_clients);
        px_server_t *s = next_idle(pool);
        if (cn == NULL || s == NULL)
            break;
        if (needs_check(s, uv_now(px_loop))) {
            start_check(s);
            continue;
        }
        link_pair(px_container_of(cn, px_client_t, node), s);
    }
    launch_if_needed(pool);
}

void px_pool_client_login(px_client_t *c)
{
    if (c->pool->welcome_ready) {
        px_client_welcome(c);
        return;
    }
    /* Waits for the pool's first login; when none can start now (server_login_retry, limits)
     * the janitor retries, and query_wait_timeout bounds the wait. */
    px_client_set_state(c, PX_CL_WAIT_LOGIN);
    launch_if_needed(c->pool);
}

void px_pool_request(px_client_t *c)
{
    px_pool_t *pool = c->pool;
    /* Fast path: nobody queued and a server free. Linking directly avoids a stop/start of
     * the client's reads that a pass through the waiting list would cost. */
    if (px_list_empty(&pool->waiting_clients) && !px_list_empty(&pool->idle_servers) &&
        !px_admin_db_paused(pool->dbname) &&
        !needs_check(next_idle(pool), uv_now(px_loop))) {
        link_pair(c, next_idle(pool));
        return;
    }
    px_client_set_state(c, PX_CL_WAITING);
    px_pool_dispatch(c->pool);
}

void px_pool_server_ready(px_server_t *s)
{
    px_pool_t *pool = s->pool;
    if (s->client != NULL) {
        /* A reset finished on a server still attached: should not happen; stay safe. */
        px_server_close(s, "internal state error");
        return;
    }
    if (s->conf_gen != pool->conf_gen) {
        px_server_close(s, "database settings changed");
        return;
    }
    pool->last_connect_failed = false;
    s->checking = false;
    px_server_set_state(s, PX_SV_IDLE);
    s->checked_at = s->state_since;
    /* Each welcome moves its client off wait_login (to active, or closing on failure); taking
     * the head each time stays correct even if a welcome changes other clients' lists. */
    px_list_t *it;
    while ((it = px_list_first(&pool->wait_login)) != NULL)
        px_client_welcome(px_container_of(it, px_client_t, node));
    px_pool_dispatch(pool);
}

/* Detaches a clean server from its client and sends it to reset or straight to idle. */
static void return_server(px_server_t *s, bool reset)
{
    px_client_t *c = s->client;
    if (c != NULL)
        c->server = NULL;
    s->client = NULL;
    const char *q = px_cfg->server_reset_query;
    if (s->conf_gen != s->pool->conf_gen) {
        px_server_close(s, "database settings changed");
        return;
    }
    if (reset && q != NULL && q[0] != '\0') {
        px_server_set_state(s, PX_SV_USED);
        px_server_internal_query(s, q);
        return;
    }
    px_server_set_state(s, PX_SV_IDLE);
    px_pool_dispatch(s->pool);
}

void px_pool_maybe_release(px_server_t *s)
{
    px_client_t *c = s->client;
    if (s->pool->pool_mode != PX_POOL_TRANSACTION || c == NULL)
        return;
    if (!px_server_is_clean(s) || c->io.rlen > 0)
        return;
    return_server(s, px_cfg->server_reset_query_always);
    px_client_update_reading(c);
}

void px_pool_release_idle(px_server_t *s)
{
    px_client_t *c = s->client;
    if (s->pool->pool_mode != PX_POOL_TRANSACTION || c == NULL || !px_server_is_clean(s))
        return;
    return_server(s, px_cfg->server_reset_query_always);
    px_client_update_reading(c);
}

void px_pool_client_gone(px_client_t *c)
{
    px_server_t *s = c->server;
    if (s == NULL)
        return;
    if (!px_server_is_clean(s)) {
        /* Mid-transaction or mid-query: nobody else may inherit this session. The link is cut
         * first so the departing client is not told that its server crashed. */
        c->server = NULL;
        s->client = NULL;
        px_server_close(s, "client disconnected while server was not ready");
        return;
    }
    bool reset = s->pool->pool_mode == PX_POOL_SESSION || px_cfg->server_reset_query_always;
    return_server(s, reset);
}

void px_pool_server_failed(px_pool_t *pool, bool server_error, const char *sqlstate,
                           const char *msg)
{
    pool->last_connect_failed = true;
    pool->last_failed_login = uv_now(px_loop);
    snprintf(pool->last_login_error, sizeof(pool->last_login_error), "%s", msg);
    if (!server_error)
        return;
    /* PostgreSQL refused the login (bad password, missing database, starting up...): clients
     * that wait for the pool's first login hear why, as PgBouncer does. Clients already logged
     * in and queued for a server keep their place; query_wait_timeout bounds their wait. */
    px_list_t *it;
    while ((it = px_list_first(&pool->wait_login)) != NULL)
        px_client_fatal(px_container_of(it, px_client_t, node), sqlstate, "%s", msg);
}

void px_pool_maintain(px_pool_t *pool)
{
    if (!px_list_empty(&pool->waiting_clients) || !px_list_empty(&pool->wait_login)) {
        px_pool_dispatch(pool);
        return;
    }
    if (pool->nservers >= pool->min_pool_size || login_retry_wait(pool) ||
        px_admin_db_paused(pool->dbname))
        return;
    int budget = server_budget(pool, false);
    int want = pool->min_pool_size - pool->nservers;
    if (pool->last_connect_failed && want > 1)
        want = px_list_empty(&pool->login_servers) ? 1 : 0;
    for (int i = 0; i < want && i < budget; i++)
        px_server_launch(pool);
}
