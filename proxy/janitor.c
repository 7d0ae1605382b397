/*
 * The janitor: a once-a-second sweep over the pools that enforces the time limits
 * (client_login_timeout, query_wait_timeout, server_connect_timeout, query_timeout,
 * idle_transaction_timeout, client_idle_timeout, server_idle_timeout, server_lifetime), drives
 * the pools' periodic work (server_login_retry, reserve_pool_timeout, min_pool_size) and closes
 * idle clients during a graceful shutdown. Sweeping once a
 * second, like PgBouncer, keeps per-connection timers out of the hot path; limits are therefore
 * enforced with up to one second of slack.
 */
#include "px_admin.h"
#include "px_dbstats.h"
#include "px_log.h"
#include "px_proxy.h"

static uv_timer_t g_janitor;

static bool expired(uint64_t since, double limit_secs, uint64_t now)
{
    return limit_secs > 0 && now - since >= (uint64_t)(limit_secs * 1000.0);
}

/* query_wait_timeout. While the pool's logins to PostgreSQL fail, the error says why in its
 * DETAIL, so "the database is down" is not mistaken for "the pool is too small". The message
 * and SQLSTATE stay PgBouncer's. */
static void query_wait_timeout(px_client_t *c)
{
    px_pool_t *pool = c->pool;
    if (pool == NULL || !pool->last_connect_failed) {
        px_client_fatal(c, "08P01", "query_wait_timeout");
        return;
    }
    char detail[256];
    snprintf(detail, sizeof(detail), "server login has been failing: %s", pool->last_login_error);
    uint8_t mem[1024];
    pgw_buf_t b;
    pgw_buf_init_fixed(&b, mem, sizeof(mem));
    pgw_build_error(&b, "FATAL", "08P01", "query_wait_timeout", detail, NULL);
    if (!pgw_buf_failed(&b))
        (void)px_io_write(&c->io, b.data, b.len);
    if (px_cfg->log_pooler_errors)
        px_log_warn("C-%llu: %s/%s@%s pooler error: query_wait_timeout (%s)",
                    (unsigned long long)c->id, c->dbname ? c->dbname : "?",
                    c->user ? c->user : "?", c->addr, detail);
    px_client_close(c, "query_wait_timeout");
}

static void sweep_login_clients(uint64_t now)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_login_clients)
    {
        px_client_t *c = px_container_of(it, px_client_t, node);
        if (expired(c->state_since, px_cfg->client_login_timeout, now))
            px_client_fatal(c, "08P01", "client_login_timeout");
    }
}

/* Limits on logged-in clients: a query running too long, a transaction left open, a client
 * that says nothing. Closing the client closes a server that is not clean with it. */
static void sweep_active(px_pool_t *pool, uint64_t now)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &pool->active_clients)
    {
        px_client_t *c = px_container_of(it, px_client_t, node);
        px_server_t *s = c->server;
        if (s != NULL && s->pending > 0) {
            if (expired(s->work_since, px_cfg->query_timeout, now)) {
                px_server_send_cancel(s);
                px_client_fatal(c, "08P01", "query timeout");  /* PgBouncer's text */
            }
            continue;
        }
        if (s != NULL && s->last_status != (uint8_t)'I') {
            if (expired(s->ready_since, px_cfg->idle_transaction_timeout, now))
                px_client_fatal(c, "08P01", "idle transaction timeout");
            continue;
        }
        /* server_fast_close: in session mode a server opened with settings a reload changed
           ("close_needed") goes, with its client, once no transaction is open on it, instead
           of at the end of the session (transaction mode does that by itself). */
        if (s != NULL && px_cfg->server_fast_close && s->conf_gen != pool->conf_gen &&
            px_pool_mode(pool) == PX_POOL_SESSION && px_server_is_clean(s)) {
            px_client_fatal(c, "08P01", "database configuration changed");
            continue;
        }
        if (expired(c->last_active, px_cfg->client_idle_timeout, now))
            px_client_fatal(c, "08P01", "client_idle_timeout");
    }
}

static void sweep_pool(px_pool_t *pool, uint64_t now)
{
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &pool->wait_login)
    {
        px_client_t *c = px_container_of(it, px_client_t, node);
        /* Waiting for the pool's first server login is waiting for a server. */
        if (expired(c->state_since, px_cfg->query_wait_timeout, now))
            query_wait_timeout(c);
        else if (expired(c->state_since, px_cfg->client_login_timeout, now))
            px_client_fatal(c, "08P01", "client_login_timeout");
    }
    px_list_foreach_safe(it, tmp, &pool->waiting_clients)
    {
        px_client_t *c = px_container_of(it, px_client_t, node);
        if (expired(c->state_since, px_cfg->query_wait_timeout, now))
            query_wait_timeout(c);
    }
    sweep_active(pool, now);
    px_list_foreach_safe(it, tmp, &pool->idle_servers)
    {
        px_server_t *s = px_container_of(it, px_server_t, node);
        if (expired(s->state_since, px_cfg->server_idle_timeout, now) &&
            pool->nservers > pool->min_pool_size)
            px_server_close(s, "server_idle_timeout");
        else if (expired(s->created_at, px_cfg->server_lifetime, now))
            px_server_close(s, "server_lifetime");
    }
    px_list_foreach_safe(it, tmp, &pool->login_servers)
    {
        px_server_t *s = px_container_of(it, px_server_t, node);
        if (expired(s->state_since, px_cfg->server_connect_timeout, now)) {
            px_server_close(s, "server_connect_timeout");
            px_pool_server_failed(pool, false, "08006",
                                  "server connect timeout (server_connect_timeout)");
        }
    }
    /* Login retries, the reserve pool, limits freed by other pools, min_pool_size. */
    px_pool_maintain(pool);
}

void px_janitor_close_idle_clients(void)
{
    px_list_t *pn, *ptmp, *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_login_clients)
    {
        px_client_fatal(px_container_of(it, px_client_t, node), "57P01", "pgshim is shutting down");
    }
    px_admin_close_all();   /* console clients are idle between commands */
    px_list_foreach_safe(pn, ptmp, &g_pools)
    {
        px_pool_t *pool = px_container_of(pn, px_pool_t, node);
        px_list_foreach_safe(it, tmp, &pool->active_clients)
        {
            px_client_t *c = px_container_of(it, px_client_t, node);
            /* Only clients between transactions: running work is allowed to finish. */
            if (c->io.rlen == 0 && c->msg_left == 0 &&
                (c->server == NULL || px_server_is_clean(c->server)))
                px_client_fatal(c, "57P01", "pgshim is shutting down");
        }
    }
}

static void janitor_cb(uv_timer_t *t)
{
    uint64_t now = uv_now(px_loop);
    sweep_login_clients(now);
    px_list_t *it, *tmp;
    px_list_foreach_safe(it, tmp, &g_pools)
    {
        sweep_pool(px_container_of(it, px_pool_t, node), now);
    }
    px_dbstats_tick();
}

void px_janitor_start(void)
{
    uv_timer_init(px_loop, &g_janitor);
    uv_timer_start(&g_janitor, janitor_cb, 1000, 1000);
    uv_unref((uv_handle_t *)&g_janitor);
}
