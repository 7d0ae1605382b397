/*
 * px_config: pgshim.ini. Options of section [pgshim] are declared once, in the table in
 * config.c (name, type, default, bounds, reloadable, apply hook); the struct below holds their
 * values. [databases] and [users] use PgBouncer's syntax. [intercept] and [tenant.NAME] are
 * parsed by flags.c into cfg->flags (px_admin.h); [redis] is accepted and skipped here.
 *
 * Ownership: a px_config_t owns every string it points to; px_config_free() releases them.
 * The running configuration is one global (px_cfg) replaced as a whole on reload, so code that
 * keeps data across a reload (pools) copies what it needs.
 */
#ifndef PGSHIM_PROXY_PX_CONFIG_H
#define PGSHIM_PROXY_PX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum px_pool_mode {
    PX_POOL_SESSION = 0,
    PX_POOL_TRANSACTION = 1,
    PX_POOL_STATEMENT = 2,   /* parsed for compatibility; treated as an error at load */
    PX_POOL_INHERIT = -1,    /* database/user entry without its own pool_mode */
} px_pool_mode_t;

typedef enum px_auth_type {
    PX_AUTH_TRUST = 0,
    PX_AUTH_PLAIN = 1,
    PX_AUTH_MD5 = 2,
    PX_AUTH_SCRAM = 3,
    PX_AUTH_ANY = 4,
} px_auth_type_t;

/* One [databases] entry. Strings NULL when not given. */
typedef struct px_db_conf {
    char *name;              /* key as written ("*" for the fallback) */
    char *host;              /* NULL: Unix socket in unix_socket_dir; leading '/' = socket dir */
    int port;                /* 0 = not given (listen_port's PostgreSQL default 5432 applies) */
    char *dbname;            /* NULL: same as the client's database */
    char *user;              /* NULL: the client's user */
    char *password;
    char *connect_query;
    char *client_encoding, *datestyle, *timezone, *application_name;
    int pool_size;           /* -1 = default_pool_size */
    int min_pool_size;       /* -1 = global */
    int reserve_pool;        /* -1 = global */
    int max_db_connections;  /* -1 = global */
    int pool_mode;           /* px_pool_mode_t, PX_POOL_INHERIT = global */
    int line;                /* ini line, for messages */
    struct px_db_conf *next;
} px_db_conf_t;

/* One [users] entry. */
typedef struct px_user_conf {
    char *name;
    int pool_mode;           /* PX_POOL_INHERIT = not set */
    int max_user_connections; /* -1 = global */
    int line;
    struct px_user_conf *next;
} px_user_conf_t;

typedef struct px_config {
    char *path;              /* the file this was loaded from */
    /* [pgshim] options, in the order of the table in config.c */
    char *logfile, *pidfile;
    char *listen_addr;
    int listen_port;
    char *unix_socket_dir;
    int unix_socket_mode;
    char *unix_socket_group;
    int listen_backlog;
    int auth_type;           /* px_auth_type_t */
    char *auth_file;
    char *admin_users, *stats_users;
    int pool_mode;           /* px_pool_mode_t */
    int default_pool_size, min_pool_size, reserve_pool_size;
    double reserve_pool_timeout;
    int max_client_conn, max_db_connections, max_user_connections;
    int max_prepared_statements;
    char *server_reset_query;
    bool server_reset_query_always;
    char *server_check_query;
    double server_check_delay;
    bool server_round_robin, server_fast_close;
    double server_connect_timeout, server_login_retry, server_lifetime, server_idle_timeout;
    double query_timeout, query_wait_timeout, client_idle_timeout, idle_transaction_timeout;
    double client_login_timeout, cancel_wait_timeout, shutdown_wait_timeout;
    char *ignore_startup_parameters;
    bool application_name_add_host;
    bool log_connections, log_disconnections, log_pooler_errors;
    int verbose;
    bool tcp_keepalive;
    int tcp_keepidle, tcp_keepintvl, tcp_keepcnt;
    bool tcp_nodelay;
    int pkt_buf, sbuf_high_water, max_packet_size;
    int stats_period;
    /* interception (intercept.c, native.c) */
    char *caps_query_file;   /* SQL text of the capability query (spec 3.11); "" = none */
    int native_pool_size;    /* native libpq connections per (server, database, user) */
    double native_query_timeout;  /* seconds one native query (or login) may take */
    double native_butree_ttl;     /* seconds an in-memory BU tree may serve; 0 = no tree */
    /* sections */
    px_db_conf_t *databases;  /* in file order; "*" may be among them */
    px_user_conf_t *users;
    /* [intercept] and [tenant.NAME], parsed by flags.c (px_admin.h); handed to the flags at
       px_config_reload_apply, NULL afterwards or when the file has no such section */
    struct px_flagset *flags;
    /* [redis] (cachemode.c, px_cache.h); NULL when the file has no such section */
    struct px_redis_conf *redis;
} px_config_t;

/* The running configuration; NULL before the first successful load. */
extern px_config_t *px_cfg;

/*
 * Loads `path`. Returns a new config, or NULL after writing "FILE:LINE: message" (or
 * "FILE: message") into err. -v on the command line adds to `verbose` after loading.
 */
px_config_t *px_config_load(const char *path, char *err, size_t errlen);
void px_config_free(px_config_t *cfg);

/*
 * Makes `next` the running config at reload: reloadable options take effect, changes to the
 * others are logged as needing a restart and keep their old values. Takes ownership of next.
 */
void px_config_reload_apply(px_config_t *next);

/* Database entry for a client's database name: exact match, else "*", else NULL. */
const px_db_conf_t *px_config_find_db(const px_config_t *cfg, const char *name);
const px_user_conf_t *px_config_find_user(const px_config_t *cfg, const char *name);

/* True if `name` is listed (case-insensitively) in ignore_startup_parameters. */
bool px_config_ignored_param(const px_config_t *cfg, const char *name);

/* Checks that every option of the table appears in the sample file (commented or not). Prints
 * missing names to out; returns the number missing, or -1 if the file cannot be read. */
int px_config_check_sample(const char *path, FILE *out);
/* Calls cb for every option of the table, in order, with its current value in cfg and its
 * default as text (booleans as 1/0, like PgBouncer's SHOW CONFIG). For the admin console. */
typedef void (*px_option_cb)(const char *name, const char *value, const char *def,
                             bool reloadable, void *arg);
void px_config_foreach_option(const px_config_t *cfg, px_option_cb cb, void *arg);
/* Prints the option table (name, default, reloadable) to out, for --help-config. */
void px_config_print_table(FILE *out);

const char *px_pool_mode_name(int mode);
const char *px_auth_type_name(int type);

#endif
