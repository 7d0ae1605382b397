/*
 * px_proxy: client and server connections, pools, and the functions that move them between
 * states. This is the proxy's internal header; nothing outside proxy/ includes it.
 *
 * Invariants:
 *  - Each client and server is on exactly one list, the one its state names; only
 *    px_client_set_state() and px_server_set_state() move them.
 *  - c->server == s iff s->client == c; a linked pair is in PX_CL_ACTIVE / PX_SV_ACTIVE.
 *  - A server is handed to a client only when its last ReadyForQuery said 'I', nothing is in
 *    flight (pending == 0, unsynced == false) and no message is half-forwarded in either
 *    direction, and nothing is owed on its prepared-statement FIFO (px_prepared.h). Anything
 *    else closes the server.
 *  - Objects are freed only from their uv_close callback (state PX_*_CLOSING until then).
 */
#ifndef PGSHIM_PROXY_PX_PROXY_H
#define PGSHIM_PROXY_PX_PROXY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "pgw.h"
#include "px_config.h"
#include "px_io.h"
#include "px_list.h"

/* Client-visible parameters tracked per client and per server (ARCHITECTURE.md). */
typedef enum px_var {
    PX_VAR_CLIENT_ENCODING,
    PX_VAR_DATESTYLE,
    PX_VAR_TIMEZONE,
    PX_VAR_INTERVALSTYLE,
    PX_VAR_STANDARD_CONFORMING_STRINGS,
    PX_VAR_APPLICATION_NAME,
    PX_VAR__COUNT
} px_var_t;

typedef struct px_vars {
    char *v[PX_VAR__COUNT];  /* owned; NULL = unknown */
} px_vars_t;

/* Index of a tracked parameter by (case-insensitive) name, or -1. */
int px_var_lookup(const char *name, size_t len);
const char *px_var_name(px_var_t v);
void px_vars_set(px_vars_t *vars, px_var_t v, const char *value, size_t len);
void px_vars_free(px_vars_t *vars);

typedef struct px_pool px_pool_t;
typedef struct px_server px_server_t;
typedef struct px_client px_client_t;
typedef struct px_user px_user_t;

typedef enum px_client_state {
    PX_CL_LOGIN,       /* g_login_clients: startup packet and authentication */
    PX_CL_WAIT_LOGIN,  /* pool->wait_login: authenticated, waiting for the pool's first server */
    PX_CL_ACTIVE,      /* pool->active_clients: logged in; linked to a server or idle */
    PX_CL_WAITING,     /* pool->waiting_clients: has a message, waits for a server (FIFO) */
    PX_CL_CLOSING,     /* g_closing_clients: uv_close pending; freed in the close callback */
    PX_CL_ADMIN,       /* px_admin_client_list(): admin console (database "pgshim"), no pool */
} px_client_state_t;

typedef enum px_auth_step {
    PX_AUTH_STEP_NONE,
    PX_AUTH_STEP_CLEARTEXT,
    PX_AUTH_STEP_MD5,
    PX_AUTH_STEP_SCRAM_FIRST,
    PX_AUTH_STEP_SCRAM_FINAL,
    PX_AUTH_STEP_DONE,
} px_auth_step_t;

struct px_client {
    px_io_t io;
    px_list_t node;             /* on the list named by state */
    px_client_state_t state;
    uint64_t state_since;       /* uv_now() at the last state change (timeouts) */
    uint64_t last_active;       /* uv_now() when the client last sent bytes */
    uint64_t id;
    char addr[64];
    char *user, *dbname;        /* from the StartupMessage */
    px_pool_t *pool;
    px_server_t *server;
    px_vars_t vars;             /* what this client believes the session settings are */
    px_vars_t startup_vars;     /* values it sent at startup (echoed in its welcome) */
    uint32_t cancel_pid, cancel_key;  /* pgshim's own BackendKeyData for this client */
    struct px_client *hash_next;      /* cancel-key hash chain */
    bool hashed;
    /* authentication */
    px_auth_step_t auth_step;
    uint8_t md5_salt[4];
    pgw_scram_server_t *scram;  /* only during a SCRAM exchange */
    px_user_t *auth_user;       /* userlist entry (owned by the userlist) */
    bool startup_done;
    /* forwarding */
    uint32_t msg_left;          /* bytes of the current message still to forward */
    /* named prepared statements in transaction mode (prepared.c): decided at login */
    bool ps_on;
    struct px_ps_client *ps;    /* client name -> statement; NULL until the first one */
    bool cancel_only;           /* connection was a CancelRequest */
    const char *close_reason;
};

typedef enum px_server_state {
    PX_SV_LOGIN,    /* pool->login_servers: connecting and authenticating */
    PX_SV_IDLE,     /* pool->idle_servers: logged in, clean, unassigned */
    PX_SV_ACTIVE,   /* pool->active_servers: linked to a client */
    PX_SV_USED,     /* pool->used_servers: running the reset query before going idle */
    PX_SV_CLOSING,  /* g_closing_servers: uv_close pending */
} px_server_state_t;

struct px_server {
    px_io_t io;
    px_list_t node;
    px_server_state_t state;
    uint64_t state_since;       /* uv_now() at the last state change (timeouts) */
    uint64_t created_at;        /* server_lifetime */
    uint64_t work_since;        /* pending went from 0 to 1 (query_timeout) */
    uint64_t query_since_us;    /* SHOW STATS: start of the query now running (px_dbstats.h) */
    uint64_t xact_since_us;     /* SHOW STATS: start of the transaction now running, 0 = none */
    uint64_t ready_since;       /* last ReadyForQuery (idle_transaction_timeout) */
    uint64_t checked_at;        /* login, reset or server_check_query last succeeded */
    bool checking;              /* PX_SV_USED is running server_check_query, not a reset */
    uint64_t id;
    px_pool_t *pool;
    uint32_t conf_gen;          /* pool->conf_gen when this connection was opened */
    px_client_t *client;
    uint32_t backend_pid, backend_key;
    uint8_t last_status;        /* last ReadyForQuery status: 'I', 'T', 'E' (0 before login) */
    uint32_t pending;           /* ReadyForQuery messages still expected */
    bool unsynced;              /* extended-protocol messages forwarded since the last Sync */
    bool copy_in;               /* server sent CopyInResponse; client has not ended the copy */
    uint32_t syncs_since_exec;  /* Syncs forwarded after the last Execute/Query (see copy_in) */
    bool setting_vars;          /* swallowing the replies to pgshim's own SET query */
    bool set_vars[PX_VAR__COUNT];
    bool internal_error;        /* an ErrorResponse came back to pgshim's own query */
    uint32_t msg_left;          /* bytes of the current message still to forward */
    /* prepared.c: statements prepared here and the FIFO of replies owed; NULL until used */
    struct px_ps_server *ps;
    bool ps_swallowing;         /* the message being relayed is a reply to pgshim's own message */
    px_vars_t vars;             /* the server session's reported settings */
    /* login */
    uv_connect_t connect_req;
    uv_getaddrinfo_t gai_req;
    bool gai_pending;
    pgw_scram_client_t *scram;
    char *login_error;          /* message of a login ErrorResponse, for waiting clients */
    char *login_error_code;
    const char *close_reason;
};

struct px_pool {
    px_list_t node;             /* g_pools */
    char *dbname;               /* database name the clients use */
    struct px_dbstats *stats;   /* SHOW STATS counters of dbname (process lifetime) */
    char *user;                 /* client user */
    /* copied from the [databases] entry at creation so a reload cannot pull it away */
    char *host;
    int port;
    char *server_db;
    char *server_user;
    char *password;             /* from [databases]; NULL = use auth_file */
    char *startup_extra[4][2];  /* client_encoding, datestyle, timezone, application_name */
    int pool_size;
    int pool_mode;
    /* limits from the [databases]/[users] entry or the globals, refreshed on reload */
    int min_pool_size, reserve_pool, max_db_connections, max_user_connections;
    /* server_login_retry: after a failed login no new connection is tried before
     * last_failed_login + server_login_retry; cleared by the next successful login. */
    bool last_connect_failed;
    uint64_t last_failed_login;
    char last_login_error[160];  /* why the last login failed (DETAIL of query_wait_timeout) */
    uint32_t conf_gen;          /* bumped when a reload changes the connection settings */
    px_list_t login_servers, idle_servers, active_servers, used_servers;
    px_list_t wait_login, active_clients, waiting_clients;
    int nservers;               /* on any server list except closing */
    /* ParameterStatus set of the pool's first server, sent to every client at login */
    char **welcome_names, **welcome_values;
    size_t nwelcome;
    bool welcome_ready;
};

/* ------------------------------------------------------------------ globals (main.c) */
extern uv_loop_t *px_loop;
extern bool px_shutting_down;
extern px_list_t g_login_clients, g_closing_clients, g_closing_servers, g_pools;
extern int px_nclients;          /* every client not yet freed */
uint64_t px_next_id(void);

/* ------------------------------------------------------------------ client.c */
void px_client_accept(uv_stream_t *listener, bool is_tcp);
/* TCP_NODELAY and keepalive (tcp_* options) on a connected TCP socket. */
void px_tcp_set_options(uv_tcp_t *tcp);
void px_client_set_state(px_client_t *c, px_client_state_t st);
/* Sends a FATAL ErrorResponse (when sqlstate is non-NULL) and closes the client. */
void px_client_fatal(px_client_t *c, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Closes without a message; reason is logged (static string). */
void px_client_close(px_client_t *c, const char *reason);
/* Sends AuthenticationOk (unless sent), the welcome parameters, BackendKeyData, ReadyForQuery. */
void px_client_welcome(px_client_t *c);
/* Pending/unsynced accounting for a message pgshim wrote to the client's server itself
 * (prepared.c), as for one forwarded from the client. */
void px_client__note_forwarded(px_server_t *s, pgw_msg_t type);
/* Called when a server was linked and is ready for the client's bytes. */
void px_client_resume(px_client_t *c);
/* Re-evaluates whether the client's socket should be read. */
void px_client_update_reading(px_client_t *c);
px_client_t *px_client_find_cancel(uint32_t pid, uint32_t key);

/* ------------------------------------------------------------------ auth.c */
/* Starts authenticating c (after a valid StartupMessage). */
void px_auth_start(px_client_t *c);
/* Handles one PasswordMessage-family frame. */
void px_auth_message(px_client_t *c, const pgw_frame_t *f);

/* ------------------------------------------------------------------ userlist.c */
struct px_user {
    char *name;
    char *secret;               /* plaintext, "md5...", or "SCRAM-SHA-256$..." */
    enum { PX_SECRET_PLAIN, PX_SECRET_MD5, PX_SECRET_SCRAM } kind;
    pgw_scram_secret_t scram;   /* parsed (SCRAM) or derived once (plaintext) */
    bool scram_ready;
    /* ClientKey/ServerKey recovered from a client's successful SCRAM proof, reused to log in to
       PostgreSQL when no plaintext password is known (pass-through SCRAM). */
    bool have_keys;
    /* Cleartext a client proved against a SCRAM secret (auth_type plain): lets pgshim log in to
       PostgreSQL as that user. Owned; wiped when the list is freed. */
    char *proven_password;
    uint8_t client_key[PGW_SCRAM_KEY_LEN];
    uint8_t server_key[PGW_SCRAM_KEY_LEN];
};
/* (Re)loads the auth file. Returns 0, or -1 after logging why (the old list stays). */
int px_userlist_load(const char *path);
px_user_t *px_userlist_find(const char *name);
void px_userlist_free(void);

/* ------------------------------------------------------------------ server.c */
/* Creates a server connection for the pool and starts connecting. */
void px_server_launch(px_pool_t *pool);
void px_server_set_state(px_server_t *s, px_server_state_t st);
void px_server_close(px_server_t *s, const char *reason);
/* Sends pgshim's own query on the server; replies are swallowed until ReadyForQuery. */
void px_server_internal_query(px_server_t *s, const char *sql);
/* Connects to the server's address and sends a CancelRequest for its backend. */
void px_server_send_cancel(px_server_t *s);
void px_server_update_reading(px_server_t *s);
/* True if the server can be given to another client as it is. */
bool px_server_is_clean(const px_server_t *s);

/* ------------------------------------------------------------------ janitor.c */
/* Starts the once-a-second sweep that enforces timeouts and drives graceful shutdown. */
void px_janitor_start(void);
/* Graceful shutdown step: closes clients that have no work in flight. */
void px_janitor_close_idle_clients(void);

/* ------------------------------------------------------------------ pool.c */
/* Pool for (database, user), created from the config on first use; NULL + error text if the
 * database is not configured. */
px_pool_t *px_pool_get(const char *dbname, const char *user, const char **err);
/* Client finished authenticating: welcome now, or wait for the pool's first server. */
void px_pool_client_login(px_client_t *c);
/* Client has a message and no server: queue it and find one. */
void px_pool_request(px_client_t *c);
/* A server finished logging in (ReadyForQuery after auth). */
void px_pool_server_ready(px_server_t *s);
/* Server's transaction ended: return it to the pool when the client has nothing pending. */
void px_pool_maybe_release(px_server_t *s);
/* Like px_pool_maybe_release, for a caller that knows the client's input is all consumed even
 * though it is still inside the client's read callback (pgshim answered the last message). */
void px_pool_release_idle(px_server_t *s);
/* A client is going away: detach it from its server (reset, keep or close the server). */
void px_pool_client_gone(px_client_t *c);
/* A server failed to log in. server_error: PostgreSQL answered with an ErrorResponse (clients
 * waiting for the pool's first login get it, as in PgBouncer); otherwise the connection itself
 * failed and clients keep waiting, bounded by query_wait_timeout, while the pool retries every
 * server_login_retry. */
void px_pool_server_failed(px_pool_t *pool, bool server_error, const char *sqlstate,
                           const char *msg);
/* Once a second (janitor): retries launches for waiting clients (server_login_retry, reserve
 * pool, db/user limits freed elsewhere) and keeps min_pool_size connections open. */
void px_pool_maintain(px_pool_t *pool);
/* Links free servers to waiting clients and launches servers as needed. */
void px_pool_dispatch(px_pool_t *pool);
int px_pool_mode(const px_pool_t *pool);
/* After a reload: pools pick up their [databases] entry's new settings; servers opened with
 * old connection settings are closed when idle and never reused. */
void px_pool_reload_all(void);

#endif
