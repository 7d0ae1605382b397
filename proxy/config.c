/*
 * Configuration loading. Every [pgshim] option is declared exactly once, in px_options[]; the
 * parser, the defaults, the bounds checks, reload and the sample-file check all walk that table,
 * so adding an option is one line here plus its documentation in etc/pgshim.ini (the check mode
 * `pgshim --check-sample FILE` fails when the sample misses one).
 *
 * Invariants: a config that px_config_load() returns has passed every check; on any error
 * nothing is returned and the message says FILE:LINE. Sections that other modules will own are
 * skipped here, never rejected.
 */
#include "px_admin.h"
#include "px_config.h"
#include "px_log.h"
#include "px_cache.h"
#include "px_native.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

px_config_t *px_cfg;

typedef enum opt_type { OPT_BOOL, OPT_INT, OPT_STR, OPT_ENUM, OPT_SECS, OPT_MODE } opt_type_t;

typedef void (*opt_apply_fn)(const px_config_t *cfg);

typedef struct px_option {
    const char *name;
    opt_type_t type;
    size_t offset;
    const char *def;                 /* default, in the same syntax as the file */
    double min, max;                 /* bounds for INT/SECS/MODE */
    const char *const *choices;      /* OPT_ENUM: names, index = stored value */
    bool reloadable;
    opt_apply_fn apply;              /* run when the value takes effect (start and reload) */
} px_option_t;

static const char *const pool_modes[] = {"session", "transaction", "statement", NULL};
static const char *const auth_types[] = {"trust", "plain", "md5", "scram-sha-256", "any", NULL};

static void apply_logfile(const px_config_t *cfg)
{
    int rc = px_log_open(cfg->logfile);
    if (rc < 0)
        px_log_error("cannot open logfile %s: %s", cfg->logfile, strerror(-rc));
}

static void apply_verbose(const px_config_t *cfg) { px_log_set_verbosity(cfg->verbose); }

#define OFF(f) offsetof(px_config_t, f)
#define BIG 2147483647.0
/* name, type, offset, default, min, max, choices, reloadable, apply */
static const px_option_t px_options[] = {
    {"logfile", OPT_STR, OFF(logfile), "", 0, 0, NULL, true, apply_logfile},
    {"pidfile", OPT_STR, OFF(pidfile), "", 0, 0, NULL, false, NULL},
    {"listen_addr", OPT_STR, OFF(listen_addr), "", 0, 0, NULL, false, NULL},
    {"listen_port", OPT_INT, OFF(listen_port), "6432", 1, 65535, NULL, false, NULL},
    {"unix_socket_dir", OPT_STR, OFF(unix_socket_dir), "/tmp", 0, 0, NULL, false, NULL},
    {"unix_socket_mode", OPT_MODE, OFF(unix_socket_mode), "0777", 0, 0777, NULL, false, NULL},
    {"unix_socket_group", OPT_STR, OFF(unix_socket_group), "", 0, 0, NULL, false, NULL},
    {"listen_backlog", OPT_INT, OFF(listen_backlog), "128", 1, 65535, NULL, false, NULL},
    {"auth_type", OPT_ENUM, OFF(auth_type), "md5", 0, 0, auth_types, true, NULL},
    {"auth_file", OPT_STR, OFF(auth_file), "", 0, 0, NULL, true, NULL},
    {"admin_users", OPT_STR, OFF(admin_users), "", 0, 0, NULL, true, NULL},
    {"stats_users", OPT_STR, OFF(stats_users), "", 0, 0, NULL, true, NULL},
    {"pool_mode", OPT_ENUM, OFF(pool_mode), "session", 0, 0, pool_modes, true, NULL},
    {"default_pool_size", OPT_INT, OFF(default_pool_size), "20", 1, 100000, NULL, true, NULL},
    {"min_pool_size", OPT_INT, OFF(min_pool_size), "0", 0, 100000, NULL, true, NULL},
    {"reserve_pool_size", OPT_INT, OFF(reserve_pool_size), "0", 0, 100000, NULL, true, NULL},
    {"reserve_pool_timeout", OPT_SECS, OFF(reserve_pool_timeout), "5", 0, BIG, NULL, true, NULL},
    {"max_client_conn", OPT_INT, OFF(max_client_conn), "100", 1, 1000000, NULL, true, NULL},
    {"max_db_connections", OPT_INT, OFF(max_db_connections), "0", 0, 1000000, NULL, true, NULL},
    {"max_user_connections", OPT_INT, OFF(max_user_connections), "0", 0, 1000000, NULL, true, NULL},
    {"max_prepared_statements", OPT_INT, OFF(max_prepared_statements), "200", 0, 1000000, NULL, true, NULL},
    {"server_reset_query", OPT_STR, OFF(server_reset_query), "DISCARD ALL", 0, 0, NULL, true, NULL},
    {"server_reset_query_always", OPT_BOOL, OFF(server_reset_query_always), "0", 0, 1, NULL, true, NULL},
    {"server_check_query", OPT_STR, OFF(server_check_query), "select 1", 0, 0, NULL, true, NULL},
    {"server_check_delay", OPT_SECS, OFF(server_check_delay), "30", 0, BIG, NULL, true, NULL},
    {"server_round_robin", OPT_BOOL, OFF(server_round_robin), "0", 0, 1, NULL, true, NULL},
    {"server_fast_close", OPT_BOOL, OFF(server_fast_close), "0", 0, 1, NULL, true, NULL},
    {"server_connect_timeout", OPT_SECS, OFF(server_connect_timeout), "15", 0, BIG, NULL, true, NULL},
    {"server_login_retry", OPT_SECS, OFF(server_login_retry), "15", 0, BIG, NULL, true, NULL},
    {"server_lifetime", OPT_SECS, OFF(server_lifetime), "3600", 0, BIG, NULL, true, NULL},
    {"server_idle_timeout", OPT_SECS, OFF(server_idle_timeout), "600", 0, BIG, NULL, true, NULL},
    {"query_timeout", OPT_SECS, OFF(query_timeout), "0", 0, BIG, NULL, true, NULL},
    {"query_wait_timeout", OPT_SECS, OFF(query_wait_timeout), "120", 0, BIG, NULL, true, NULL},
    {"client_idle_timeout", OPT_SECS, OFF(client_idle_timeout), "0", 0, BIG, NULL, true, NULL},
    {"client_login_timeout", OPT_SECS, OFF(client_login_timeout), "60", 0, BIG, NULL, true, NULL},
    {"idle_transaction_timeout", OPT_SECS, OFF(idle_transaction_timeout), "0", 0, BIG, NULL, true, NULL},
    {"cancel_wait_timeout", OPT_SECS, OFF(cancel_wait_timeout), "10", 0, BIG, NULL, true, NULL},
    {"shutdown_wait_timeout", OPT_SECS, OFF(shutdown_wait_timeout), "60", 0, BIG, NULL, true, NULL},
    {"ignore_startup_parameters", OPT_STR, OFF(ignore_startup_parameters), "extra_float_digits", 0, 0, NULL, true, NULL},
    {"application_name_add_host", OPT_BOOL, OFF(application_name_add_host), "0", 0, 1, NULL, true, NULL},
    {"log_connections", OPT_BOOL, OFF(log_connections), "1", 0, 1, NULL, true, NULL},
    {"log_disconnections", OPT_BOOL, OFF(log_disconnections), "1", 0, 1, NULL, true, NULL},
    {"log_pooler_errors", OPT_BOOL, OFF(log_pooler_errors), "1", 0, 1, NULL, true, NULL},
    {"verbose", OPT_INT, OFF(verbose), "0", 0, 10, NULL, true, apply_verbose},
    {"tcp_keepalive", OPT_BOOL, OFF(tcp_keepalive), "1", 0, 1, NULL, true, NULL},
    {"tcp_keepidle", OPT_INT, OFF(tcp_keepidle), "0", 0, 86400, NULL, true, NULL},
    {"tcp_keepintvl", OPT_INT, OFF(tcp_keepintvl), "0", 0, 86400, NULL, true, NULL},
    {"tcp_keepcnt", OPT_INT, OFF(tcp_keepcnt), "0", 0, 1000, NULL, true, NULL},
    {"tcp_nodelay", OPT_BOOL, OFF(tcp_nodelay), "1", 0, 1, NULL, true, NULL},
    {"pkt_buf", OPT_INT, OFF(pkt_buf), "4096", 512, 16777216, NULL, false, NULL},
    {"sbuf_high_water", OPT_INT, OFF(sbuf_high_water), "262144", 4096, 1073741824, NULL, true, NULL},
    {"max_packet_size", OPT_INT, OFF(max_packet_size), "2147483647", 9, BIG, NULL, true, NULL},
    {"stats_period", OPT_INT, OFF(stats_period), "60", 1, 86400, NULL, true, NULL},
    {"caps_query_file", OPT_STR, OFF(caps_query_file), "", 0, 0, NULL, true, NULL},
    {"native_pool_size", OPT_INT, OFF(native_pool_size), "4", 1, 1000, NULL, true, NULL},
    {"native_query_timeout", OPT_SECS, OFF(native_query_timeout), "5", 0.001, 3600, NULL, true, NULL},
    {"native_butree_ttl", OPT_SECS, OFF(native_butree_ttl), "0", 0, 86400, NULL, true, NULL},
};
#undef OFF
#define NOPTIONS (sizeof(px_options) / sizeof(px_options[0]))

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

typedef struct load_ctx {
    px_config_t *cfg;
    const char *path;
    int line;                /* line of the text inih is handing to the handler */
    bool line_done;          /* previous chunk ended a line */
    FILE *f;
    char *err;
    size_t errlen;
    bool failed;
    bool seen[NOPTIONS];
    px_db_conf_t **db_tail;
    px_user_conf_t **user_tail;
} load_ctx_t;

static int fail(load_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(load_ctx_t *ctx, const char *fmt, ...)
{
    if (ctx->failed)
        return 0;
    ctx->failed = true;
    int n = snprintf(ctx->err, ctx->errlen, "%s:%d: ", ctx->path, ctx->line);
    if (n < 0 || (size_t)n >= ctx->errlen)
        return 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err + n, ctx->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return 0;
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "");
    if (d == NULL) {
        fprintf(stderr, "pgshim: out of memory\n");
        exit(1);
    }
    return d;
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"1", "on", "yes", "true", NULL};
    static const char *const no[] = {"0", "off", "no", "false", NULL};
    for (int i = 0; yes[i] != NULL; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool parse_long(const char *v, int base, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, base);
    if (errno != 0 || end == v || *end != '\0')
        return false;
    *out = n;
    return true;
}

/* Seconds as PgBouncer writes them: a number, optionally fractional. */
static bool parse_secs(const char *v, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !isfinite(d))
        return false;
    *out = d;
    return true;
}

static int find_choice(const char *const *choices, const char *v)
{
    for (int i = 0; choices[i] != NULL; i++)
        if (strcasecmp(choices[i], v) == 0)
            return i;
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * [pgshim] options
 * ------------------------------------------------------------------------------------------- */

static const px_option_t *find_option(const char *name, size_t *idx)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (strcasecmp(px_options[i].name, name) == 0) {
            if (idx != NULL)
                *idx = i;
            return &px_options[i];
        }
    }
    return NULL;
}

/* Parses v into the option's slot of cfg; on error writes a reason into why. */
static bool set_option(px_config_t *cfg, const px_option_t *o, const char *v, char *why, size_t wl)
{
    void *slot = (char *)cfg + o->offset;
    long n;
    double d;
    bool b;
    switch (o->type) {
    case OPT_BOOL:
        if (!parse_bool(v, &b))
            return snprintf(why, wl, "invalid boolean \"%s\" for %s", v, o->name), false;
        *(bool *)slot = b;
        return true;
    case OPT_INT:
    case OPT_MODE:
        if (!parse_long(v, o->type == OPT_MODE ? 8 : 10, &n))
            return snprintf(why, wl, "invalid integer \"%s\" for %s", v, o->name), false;
        if ((double)n < o->min || (double)n > o->max)
            return snprintf(why, wl, "%s = %ld out of range [%.0f, %.0f]", o->name, n, o->min,
                            o->max), false;
        *(int *)slot = (int)n;
        return true;
    case OPT_SECS:
        if (!parse_secs(v, &d))
            return snprintf(why, wl, "invalid number of seconds \"%s\" for %s", v, o->name), false;
        if (d < o->min || d > o->max)
            return snprintf(why, wl, "%s = %s out of range", o->name, v), false;
        *(double *)slot = d;
        return true;
    case OPT_ENUM:
        n = find_choice(o->choices, v);
        if (n < 0)
            return snprintf(why, wl, "invalid value \"%s\" for %s", v, o->name), false;
        *(int *)slot = (int)n;
        return true;
    case OPT_STR: {
        char **s = slot;
        free(*s);
        *s = xstrdup(v);
        return true;
    }
    }
    return false;
}

static void set_defaults(px_config_t *cfg)
{
    char why[256];
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (!set_option(cfg, &px_options[i], px_options[i].def, why, sizeof(why))) {
            fprintf(stderr, "pgshim: bad built-in default: %s\n", why);
            abort();
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * [databases]: `name = key=value key='quoted value' ...`
 * ------------------------------------------------------------------------------------------- */

/* Splits the next key=value pair off *p. Values may be single-quoted with '' for a quote. Keys
 * and values are written into the caller's buffers. Returns 1 with a pair, 0 at the end, -1 on
 * a syntax error. */
static int next_pair(const char **p, char *key, size_t kl, char *val, size_t vl)
{
    const char *s = *p;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '\0')
        return 0;
    size_t k = 0;
    while (*s != '\0' && *s != '=' && !isspace((unsigned char)*s)) {
        if (k + 1 >= kl)
            return -1;
        key[k++] = *s++;
    }
    key[k] = '\0';
    while (isspace((unsigned char)*s))
        s++;
    if (*s++ != '=' || k == 0)
        return -1;
    while (isspace((unsigned char)*s))
        s++;
    size_t v = 0;
    if (*s == '\'') {
        s++;
        for (;;) {
            if (*s == '\0')
                return -1;
            if (*s == '\'' && s[1] == '\'') {
                s++;
            } else if (*s == '\'') {
                s++;
                break;
            }
            if (v + 1 >= vl)
                return -1;
            val[v++] = *s++;
        }
    } else {
        while (*s != '\0' && !isspace((unsigned char)*s)) {
            if (v + 1 >= vl)
                return -1;
            val[v++] = *s++;
        }
    }
    val[v] = '\0';
    *p = s;
    return 1;
}

static bool parse_int_field(load_ctx_t *ctx, const char *key, const char *v, int lo, int hi, int *out)
{
    long n;
    if (!parse_long(v, 10, &n) || n < lo || n > hi) {
        fail(ctx, "invalid value \"%s\" for %s", v, key);
        return false;
    }
    *out = (int)n;
    return true;
}

static bool parse_pool_mode(load_ctx_t *ctx, const char *v, int *out)
{
    int m = find_choice(pool_modes, v);
    if (m < 0 || m == PX_POOL_STATEMENT) {
        fail(ctx, "unsupported pool_mode \"%s\" (session or transaction)", v);
        return false;
    }
    *out = m;
    return true;
}

static bool set_db_field(load_ctx_t *ctx, px_db_conf_t *db, const char *key, const char *v)
{
    struct { const char *name; char **slot; } strs[] = {
        {"host", &db->host}, {"dbname", &db->dbname}, {"user", &db->user},
        {"password", &db->password}, {"connect_query", &db->connect_query},
        {"client_encoding", &db->client_encoding}, {"datestyle", &db->datestyle},
        {"timezone", &db->timezone}, {"application_name", &db->application_name},
    };
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        if (strcasecmp(key, strs[i].name) == 0) {
            free(*strs[i].slot);
            *strs[i].slot = xstrdup(v);
            return true;
        }
    }
    if (strcasecmp(key, "port") == 0)
        return parse_int_field(ctx, key, v, 1, 65535, &db->port);
    if (strcasecmp(key, "pool_size") == 0)
        return parse_int_field(ctx, key, v, 1, 100000, &db->pool_size);
    if (strcasecmp(key, "min_pool_size") == 0)
        return parse_int_field(ctx, key, v, 0, 100000, &db->min_pool_size);
    if (strcasecmp(key, "reserve_pool") == 0)
        return parse_int_field(ctx, key, v, 0, 100000, &db->reserve_pool);
    if (strcasecmp(key, "max_db_connections") == 0)
        return parse_int_field(ctx, key, v, 0, 1000000, &db->max_db_connections);
    if (strcasecmp(key, "pool_mode") == 0)
        return parse_pool_mode(ctx, v, &db->pool_mode);
    fail(ctx, "unknown parameter \"%s\" in database \"%s\"", key, db->name);
    return false;
}

static void db_free(px_db_conf_t *db)
{
    free(db->name);
    free(db->host);
    free(db->dbname);
    free(db->user);
    free(db->password);
    free(db->connect_query);
    free(db->client_encoding);
    free(db->datestyle);
    free(db->timezone);
    free(db->application_name);
    free(db);
}

static int handle_database(load_ctx_t *ctx, const char *name, const char *value)
{
    if (px_config_find_db(ctx->cfg, name) != NULL &&
        strcmp(px_config_find_db(ctx->cfg, name)->name, name) == 0)
        return fail(ctx, "database \"%s\" defined twice", name);
    px_db_conf_t *db = calloc(1, sizeof(*db));
    if (db == NULL)
        return fail(ctx, "out of memory");
    db->name = xstrdup(name);
    db->pool_size = db->min_pool_size = db->reserve_pool = db->max_db_connections = -1;
    db->pool_mode = PX_POOL_INHERIT;
    db->line = ctx->line;
    char key[64], val[1024];
    const char *p = value;
    int rc;
    while ((rc = next_pair(&p, key, sizeof(key), val, sizeof(val))) == 1) {
        if (!set_db_field(ctx, db, key, val)) {
            db_free(db);
            return 0;
        }
    }
    if (rc < 0) {
        db_free(db);
        return fail(ctx, "syntax error in connection string of database \"%s\"", name);
    }
    *ctx->db_tail = db;
    ctx->db_tail = &db->next;
    return 1;
}

static int handle_user(load_ctx_t *ctx, const char *name, const char *value)
{
    px_user_conf_t *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return fail(ctx, "out of memory");
    u->name = xstrdup(name);
    u->pool_mode = PX_POOL_INHERIT;
    u->max_user_connections = -1;
    u->line = ctx->line;
    char key[64], val[1024];
    const char *p = value;
    int rc;
    bool ok = true;
    while (ok && (rc = next_pair(&p, key, sizeof(key), val, sizeof(val))) == 1) {
        if (strcasecmp(key, "pool_mode") == 0)
            ok = parse_pool_mode(ctx, val, &u->pool_mode);
        else if (strcasecmp(key, "max_user_connections") == 0)
            ok = parse_int_field(ctx, key, val, 0, 1000000, &u->max_user_connections);
        else
            ok = fail(ctx, "unknown parameter \"%s\" for user \"%s\"", key, name);
    }
    if (ok && rc < 0)
        ok = fail(ctx, "syntax error in settings of user \"%s\"", name);
    if (!ok) {
        free(u->name);
        free(u);
        return 0;
    }
    *ctx->user_tail = u;
    ctx->user_tail = &u->next;
    return 1;
}

/* ---------------------------------------------------------------------------------------------
 * inih glue
 * ------------------------------------------------------------------------------------------- */

/* Sections owned by other modules. [intercept] and [tenant.NAME] are handed to flags.c
 * (handle_flags below), [redis] to cachemode.c (handle_redis). */
static bool foreign_section(const char *section)
{
    return strcasecmp(section, "intercept") == 0 || strcasecmp(section, "redis") == 0 ||
           strncasecmp(section, "tenant.", 7) == 0;
}

static int handle_pgshim(load_ctx_t *ctx, const char *name, const char *value)
{
    size_t idx;
    const px_option_t *o = find_option(name, &idx);
    if (o == NULL)
        return fail(ctx, "unknown option \"%s\" in section [pgshim]", name);
    if (ctx->seen[idx])
        px_log_warn("%s:%d: %s set more than once; the last value wins", ctx->path, ctx->line, name);
    ctx->seen[idx] = true;
    char why[512];
    if (!set_option(ctx->cfg, o, value, why, sizeof(why)))
        return fail(ctx, "%s", why);
    return 1;
}

/* [intercept] and [tenant.NAME] belong to the flags (flags.c); errors come back as text. */
static int handle_flags(load_ctx_t *ctx, const char *section, const char *name, const char *value)
{
    char why[512];
    if (px_flags_config_line(&ctx->cfg->flags, section, name, value, ctx->line, why,
                             sizeof(why)) != 0)
        return fail(ctx, "%s", why);
    return 1;
}

/* [redis] belongs to the cache (cachemode.c). */
static int handle_redis(load_ctx_t *ctx, const char *name, const char *value)
{
    char why[512];
    if (px_redis_config_line(&ctx->cfg->redis, name, value, why, sizeof(why)) != 0)
        return fail(ctx, "%s", why);
    return 1;
}

static int ini_handler_cb(void *user, const char *section, const char *name, const char *value)
{
    load_ctx_t *ctx = user;
    if (ctx->failed)
        return 0;
    if (strcasecmp(section, "pgshim") == 0 || strcasecmp(section, "pgbouncer") == 0)
        return handle_pgshim(ctx, name, value);
    if (strcasecmp(section, "databases") == 0)
        return handle_database(ctx, name, value);
    if (strcasecmp(section, "users") == 0)
        return handle_user(ctx, name, value);
    if (strcasecmp(section, "intercept") == 0 || strncasecmp(section, "tenant.", 7) == 0)
        return handle_flags(ctx, section, name, value);
    if (strcasecmp(section, "redis") == 0)
        return handle_redis(ctx, name, value);
    if (foreign_section(section))
        return 1;
    if (section[0] == '\0')
        return fail(ctx, "option \"%s\" outside any section", name);
    return fail(ctx, "unknown section [%s]", section);
}

/* fgets-style reader that counts lines, so handler errors can name the line inih is on. */
static char *ini_reader_cb(char *str, int num, void *stream)
{
    load_ctx_t *ctx = stream;
    char *r = fgets(str, num, ctx->f);
    if (r == NULL)
        return NULL;
    if (ctx->line_done)
        ctx->line++;
    size_t len = strlen(r);
    ctx->line_done = len > 0 && r[len - 1] == '\n';
    return r;
}

/* Section headers are checked here because inih does not report empty sections; an unknown
 * section with no keys is still a typo the operator wants to hear about. */
static bool check_sections(load_ctx_t *ctx)
{
    rewind(ctx->f);
    char buf[4096];
    int line = 0;
    while (fgets(buf, sizeof(buf), ctx->f) != NULL) {
        line++;
        char *s = buf;
        while (isspace((unsigned char)*s))
            s++;
        if (*s != '[')
            continue;
        char *e = strchr(s, ']');
        if (e == NULL)
            continue;  /* inih reports the syntax error */
        *e = '\0';
        s++;
        if (strcasecmp(s, "pgshim") == 0 || strcasecmp(s, "pgbouncer") == 0 ||
            strcasecmp(s, "databases") == 0 || strcasecmp(s, "users") == 0 || foreign_section(s))
            continue;
        ctx->line = line;
        fail(ctx, "unknown section [%s]", s);
        return false;
    }
    return true;
}

static bool validate(load_ctx_t *ctx)
{
    px_config_t *cfg = ctx->cfg;
    ctx->line = 0;
    if (cfg->pool_mode == PX_POOL_STATEMENT) {
        snprintf(ctx->err, ctx->errlen, "%s: pool_mode = statement is not supported", ctx->path);
        return false;
    }
    if (cfg->auth_type != PX_AUTH_TRUST && cfg->auth_type != PX_AUTH_ANY &&
        cfg->auth_file[0] == '\0') {
        snprintf(ctx->err, ctx->errlen, "%s: auth_type = %s needs auth_file", ctx->path,
                 auth_types[cfg->auth_type]);
        return false;
    }
    if (cfg->listen_addr[0] == '\0' && cfg->unix_socket_dir[0] == '\0') {
        snprintf(ctx->err, ctx->errlen, "%s: neither listen_addr nor unix_socket_dir is set",
                 ctx->path);
        return false;
    }
    return true;
}

px_config_t *px_config_load(const char *path, char *err, size_t errlen)
{
    px_config_t *cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    cfg->path = xstrdup(path);
    set_defaults(cfg);
    load_ctx_t ctx = {.cfg = cfg, .path = path, .err = err, .errlen = errlen,
                      .line_done = true, .db_tail = &cfg->databases, .user_tail = &cfg->users};
    ctx.f = fopen(path, "r");
    if (ctx.f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        px_config_free(cfg);
        return NULL;
    }
    /* PgBouncer's ini dialect: comments start a line; ';' inside a value (a password) is data;
     * long [databases] lines are normal; indentation does not continue a value. */
    ini_allow_inline_comments = false;
    ini_allow_multiline = false;
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = 1 << 20;
    int rc = check_sections(&ctx) ? 0 : 1;
    if (rc == 0) {
        rewind(ctx.f);
        rc = ini_parse_stream(ini_reader_cb, &ctx, ini_handler_cb, &ctx);
    }
    fclose(ctx.f);
    if (rc != 0 && !ctx.failed)
        snprintf(err, errlen, "%s:%d: syntax error", path, rc > 0 ? rc : 0);
    if (rc != 0 || ctx.failed || !validate(&ctx)) {
        px_config_free(cfg);
        return NULL;
    }
    return cfg;
}

void px_config_free(px_config_t *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < NOPTIONS; i++)
        if (px_options[i].type == OPT_STR)
            free(*(char **)((char *)cfg + px_options[i].offset));
    px_redis_conf_free(cfg->redis);
    while (cfg->databases != NULL) {
        px_db_conf_t *next = cfg->databases->next;
        db_free(cfg->databases);
        cfg->databases = next;
    }
    while (cfg->users != NULL) {
        px_user_conf_t *next = cfg->users->next;
        free(cfg->users->name);
        free(cfg->users);
        cfg->users = next;
    }
    px_flags_set_free(cfg->flags);
    free(cfg->path);
    free(cfg);
}

/* ---------------------------------------------------------------------------------------------
 * Reload
 * ------------------------------------------------------------------------------------------- */

static bool option_equal(const px_option_t *o, const px_config_t *a, const px_config_t *b)
{
    const void *x = (const char *)a + o->offset, *y = (const char *)b + o->offset;
    switch (o->type) {
    case OPT_BOOL: return *(const bool *)x == *(const bool *)y;
    case OPT_INT:
    case OPT_MODE:
    case OPT_ENUM: return *(const int *)x == *(const int *)y;
    case OPT_SECS: return *(const double *)x == *(const double *)y;
    case OPT_STR: return strcmp(*(char *const *)x, *(char *const *)y) == 0;
    }
    return true;
}

/* Copies option o's value from src into dst (strings are duplicated). */
static void option_copy(const px_option_t *o, px_config_t *dst, const px_config_t *src)
{
    void *d = (char *)dst + o->offset;
    const void *s = (const char *)src + o->offset;
    switch (o->type) {
    case OPT_BOOL: *(bool *)d = *(const bool *)s; break;
    case OPT_INT:
    case OPT_MODE:
    case OPT_ENUM: *(int *)d = *(const int *)s; break;
    case OPT_SECS: *(double *)d = *(const double *)s; break;
    case OPT_STR:
        free(*(char **)d);
        *(char **)d = xstrdup(*(char *const *)s);
        break;
    }
}

void px_config_reload_apply(px_config_t *next)
{
    px_config_t *old = px_cfg;
    for (size_t i = 0; i < NOPTIONS && old != NULL; i++) {
        const px_option_t *o = &px_options[i];
        if (option_equal(o, old, next))
            continue;
        if (!o->reloadable) {
            px_log_warn("config reload: %s changed; the new value needs a restart", o->name);
            option_copy(o, next, old);
        }
    }
    px_cfg = next;
    px_flags_install(next->flags);  /* takes ownership; the flag swap of this reload */
    next->flags = NULL;
    for (size_t i = 0; i < NOPTIONS; i++) {
        const px_option_t *o = &px_options[i];
        if (o->apply != NULL && (old == NULL || !option_equal(o, old, next)))
            o->apply(next);
    }
    px_intercept_config_applied(next);  /* re-reads caps_query_file at start and every reload */
    px_config_free(old);
}

/* ---------------------------------------------------------------------------------------------
 * Lookups
 * ------------------------------------------------------------------------------------------- */

const px_db_conf_t *px_config_find_db(const px_config_t *cfg, const char *name)
{
    const px_db_conf_t *fallback = NULL;
    for (const px_db_conf_t *db = cfg->databases; db != NULL; db = db->next) {
        if (strcmp(db->name, name) == 0)
            return db;
        if (strcmp(db->name, "*") == 0)
            fallback = db;
    }
    return fallback;
}

const px_user_conf_t *px_config_find_user(const px_config_t *cfg, const char *name)
{
    for (const px_user_conf_t *u = cfg->users; u != NULL; u = u->next)
        if (strcmp(u->name, name) == 0)
            return u;
    return NULL;
}

bool px_config_ignored_param(const px_config_t *cfg, const char *name)
{
    const char *p = cfg->ignore_startup_parameters;
    size_t nl = strlen(name);
    while (*p != '\0') {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',' && !isspace((unsigned char)*p))
            p++;
        if ((size_t)(p - start) == nl && nl > 0 && strncasecmp(start, name, nl) == 0)
            return true;
    }
    return false;
}

const char *px_pool_mode_name(int mode)
{
    return mode >= 0 && mode <= PX_POOL_STATEMENT ? pool_modes[mode] : "inherit";
}

const char *px_auth_type_name(int type)
{
    return type >= 0 && type <= PX_AUTH_ANY ? auth_types[type] : "?";
}

/* ---------------------------------------------------------------------------------------------
 * Sample check
 * ------------------------------------------------------------------------------------------- */

/* True if `line` mentions `name` as an option: optional comment markers, then name, then '='. */
static bool line_names_option(const char *line, const char *name)
{
    while (*line == ';' || *line == '#' || isspace((unsigned char)*line))
        line++;
    size_t nl = strlen(name);
    if (strncmp(line, name, nl) != 0)
        return false;
    line += nl;
    while (*line == ' ' || *line == '\t')
        line++;
    return *line == '=';
}

int px_config_check_sample(const char *path, FILE *out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(out, "%s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    bool found[NOPTIONS] = {false};
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL)
        for (size_t i = 0; i < NOPTIONS; i++)
            if (!found[i] && line_names_option(line, px_options[i].name))
                found[i] = true;
    fclose(f);
    int missing = 0;
    for (size_t i = 0; i < NOPTIONS; i++) {
        if (!found[i]) {
            fprintf(out, "%s: option %s is not documented\n", path, px_options[i].name);
            missing++;
        }
    }
    return missing;
}

void px_config_foreach_option(const px_config_t *cfg, px_option_cb cb, void *arg)
{
    for (size_t i = 0; i < NOPTIONS; i++) {
        const px_option_t *o = &px_options[i];
        const void *v = (const char *)cfg + o->offset;
        char buf[64];
        const char *text = buf;
        switch (o->type) {
        case OPT_BOOL: text = *(const bool *)v ? "1" : "0"; break;
        case OPT_INT: snprintf(buf, sizeof(buf), "%d", *(const int *)v); break;
        case OPT_MODE: snprintf(buf, sizeof(buf), "0%o", (unsigned)*(const int *)v); break;
        case OPT_ENUM: text = o->choices[*(const int *)v]; break;
        case OPT_SECS: snprintf(buf, sizeof(buf), "%g", *(const double *)v); break;
        case OPT_STR: text = *(char *const *)v; break;
        }
        cb(o->name, text, o->def, o->reloadable, arg);
    }
}

void px_config_print_table(FILE *out)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        fprintf(out, "  %-28s default \"%s\"%s\n", px_options[i].name, px_options[i].def,
                px_options[i].reloadable ? "" : " (restart needed to change)");
}
