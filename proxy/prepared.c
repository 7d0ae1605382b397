/*
 * Named prepared statements in transaction pooling mode (issue 3). See px_prepared.h for the
 * model: a registry of statements shared by the process, a name map per client, a bounded set per
 * server connection, and a FIFO per server of what each message sent to it will be answered with.
 *
 * Invariants kept here:
 *  - Every pointer to a registry entry (client map, server set item, FIFO request) holds one
 *    reference; the entry is unlinked and freed when the last one goes.
 *  - A FIFO request is removed exactly once: completed by the server's reply, emitted (fakes),
 *    or dropped after an ErrorResponse; a dropped or failed Parse/Close has its effect on the
 *    client map and the server set undone, because PostgreSQL did not run it.
 *  - Nothing is written to the client here except at a server message boundary.
 */
#include "px_prepared.h"
#include "px_proxy.h"
#include "px_log.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------------------------------------
 * Registry
 * ------------------------------------------------------------------------------------------- */

typedef struct ps_stmt {
    uint64_t id;
    char name[32];              /* "PGSHIM_<id>": what the servers know it as */
    char *sql;                  /* NUL-terminated */
    size_t sql_len;
    uint32_t *oids;
    uint16_t noids;
    uint32_t hash;
    uint32_t refs;
    struct ps_stmt *next;       /* registry chain */
} ps_stmt_t;

static ps_stmt_t **g_reg;
static size_t g_reg_nb, g_reg_n;
static uint64_t g_next_stmt_id;

static uint32_t fnv(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

static uint32_t stmt_hash(const char *sql, size_t len, const pgw_parse_t *p)
{
    uint32_t h = fnv(2166136261u, sql, len);
    return fnv(h, p->param_oids, (size_t)p->nparams * 4);
}

static bool reg_grow(void)
{
    size_t nb = g_reg_nb ? g_reg_nb * 2 : 256;
    ps_stmt_t **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return false;
    for (size_t i = 0; i < g_reg_nb; i++) {
        for (ps_stmt_t *st = g_reg[i], *next; st != NULL; st = next) {
            next = st->next;
            st->next = b[st->hash % nb];
            b[st->hash % nb] = st;
        }
    }
    free(g_reg);
    g_reg = b;
    g_reg_nb = nb;
    return true;
}

/* The entry for the Parse's (text, parameter types), created when new; one reference taken. */
static ps_stmt_t *reg_get(const pgw_parse_t *p)
{
    uint32_t h = stmt_hash(p->sql.ptr, p->sql.len, p);
    if (g_reg_nb > 0) {
        for (ps_stmt_t *st = g_reg[h % g_reg_nb]; st != NULL; st = st->next) {
            if (st->hash != h || st->sql_len != p->sql.len || st->noids != p->nparams ||
                memcmp(st->sql, p->sql.ptr, st->sql_len) != 0)
                continue;
            bool same = true;
            for (uint16_t i = 0; i < st->noids && same; i++)
                same = st->oids[i] == pgw_parse_param_oid(p, i);
            if (same) {
                st->refs++;
                return st;
            }
        }
    }
    if ((g_reg_n + 1 > g_reg_nb * 2 || g_reg_nb == 0) && !reg_grow() && g_reg_nb == 0)
        return NULL;
    ps_stmt_t *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return NULL;
    st->sql = malloc(p->sql.len + 1);
    st->oids = malloc(((size_t)p->nparams + 1) * sizeof(uint32_t));
    if (st->sql == NULL || st->oids == NULL) {
        free(st->sql);
        free(st->oids);
        free(st);
        return NULL;
    }
    memcpy(st->sql, p->sql.ptr, p->sql.len);
    st->sql[p->sql.len] = '\0';
    st->sql_len = p->sql.len;
    st->noids = p->nparams;
    for (uint16_t i = 0; i < p->nparams; i++)
        st->oids[i] = pgw_parse_param_oid(p, i);
    st->id = ++g_next_stmt_id;
    snprintf(st->name, sizeof(st->name), "PGSHIM_%llu", (unsigned long long)st->id);
    st->hash = h;
    st->refs = 1;
    st->next = g_reg[h % g_reg_nb];
    g_reg[h % g_reg_nb] = st;
    g_reg_n++;
    return st;
}

static ps_stmt_t *stmt_ref(ps_stmt_t *st)
{
    if (st != NULL)
        st->refs++;
    return st;
}

static void stmt_unref(ps_stmt_t *st)
{
    if (st == NULL || --st->refs > 0)
        return;
    for (ps_stmt_t **p = &g_reg[st->hash % g_reg_nb]; *p != NULL; p = &(*p)->next) {
        if (*p == st) {
            *p = st->next;
            break;
        }
    }
    g_reg_n--;
    free(st->sql);
    free(st->oids);
    free(st);
}

/* ---------------------------------------------------------------------------------------------
 * Client map: client statement name -> registry entry
 * ------------------------------------------------------------------------------------------- */

typedef struct ps_name {
    char *name;
    size_t len;
    ps_stmt_t *st;
    struct ps_name *next;
} ps_name_t;

struct px_ps_client {
    ps_name_t **b;
    size_t nb, n;
};

static px_ps_client_t *client_ps(px_client_t *c)
{
    if (c->ps == NULL) {
        c->ps = calloc(1, sizeof(*c->ps));
        if (c->ps != NULL && (c->ps->b = calloc(64, sizeof(ps_name_t *))) == NULL) {
            free(c->ps);
            c->ps = NULL;
        }
        if (c->ps != NULL)
            c->ps->nb = 64;
    }
    return c->ps;
}

static ps_name_t **map_slot(px_ps_client_t *m, const char *name, size_t len)
{
    ps_name_t **p = &m->b[fnv(2166136261u, name, len) % m->nb];
    while (*p != NULL && ((*p)->len != len || memcmp((*p)->name, name, len) != 0))
        p = &(*p)->next;
    return p;
}

static ps_stmt_t *map_get(px_ps_client_t *m, const char *name, size_t len)
{
    if (m == NULL)
        return NULL;
    ps_name_t *e = *map_slot(m, name, len);
    return e != NULL ? e->st : NULL;
}

static void map_grow(px_ps_client_t *m)
{
    size_t nb = m->nb * 2;
    ps_name_t **b = calloc(nb, sizeof(*b));
    if (b == NULL)
        return;  /* longer chains, still correct */
    for (size_t i = 0; i < m->nb; i++) {
        for (ps_name_t *e = m->b[i], *next; e != NULL; e = next) {
            next = e->next;
            ps_name_t **slot = &b[fnv(2166136261u, e->name, e->len) % nb];
            e->next = *slot;
            *slot = e;
        }
    }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

/* Maps name to st (takes a new reference). The name must not be mapped. Returns false on OOM. */
static bool map_put(px_ps_client_t *m, const char *name, size_t len, ps_stmt_t *st)
{
    ps_name_t *e = calloc(1, sizeof(*e));
    char *copy = malloc(len + 1);
    if (e == NULL || copy == NULL) {
        free(e);
        free(copy);
        return false;
    }
    memcpy(copy, name, len);
    copy[len] = '\0';
    e->name = copy;
    e->len = len;
    e->st = stmt_ref(st);
    ps_name_t **slot = map_slot(m, name, len);
    e->next = *slot;
    *slot = e;
    if (++m->n > m->nb * 2)
        map_grow(m);
    return true;
}

static void map_del(px_ps_client_t *m, const char *name, size_t len)
{
    if (m == NULL)
        return;
    ps_name_t **slot = map_slot(m, name, len);
    ps_name_t *e = *slot;
    if (e == NULL)
        return;
    *slot = e->next;
    stmt_unref(e->st);
    free(e->name);
    free(e);
    m->n--;
}

static void map_clear(px_ps_client_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nb; i++) {
        for (ps_name_t *e = m->b[i], *next; e != NULL; e = next) {
            next = e->next;
            stmt_unref(e->st);
            free(e->name);
            free(e);
        }
        m->b[i] = NULL;
    }
    m->n = 0;
}

void px_ps_client_free(px_client_t *c)
{
    if (c->ps == NULL)
        return;
    map_clear(c->ps);
    free(c->ps->b);
    free(c->ps);
    c->ps = NULL;
}

bool px_ps_enabled_for(const px_client_t *c)
{
    return c->pool != NULL && px_pool_mode(c->pool) == PX_POOL_TRANSACTION &&
           px_cfg->max_prepared_statements > 0;
}

/* ---------------------------------------------------------------------------------------------
 * Server state: the set of prepared entries and the reply FIFO
 * ------------------------------------------------------------------------------------------- */

typedef struct ps_item {
    ps_stmt_t *st;
    uint64_t used;              /* LRU clock */
    uint64_t batch;             /* batch it was last used in: not evicted while that is open */
} ps_item_t;

typedef enum req_kind {
    R_PARSE, R_BIND, R_DESC_S, R_DESC_P, R_EXEC, R_CLOSE, R_SYNC, R_QUERY, R_FCALL,
    /* made up by pgshim, emitted when they reach the head */
    R_FAKE_PARSE, R_FAKE_CLOSE, R_FAKE_DEALLOC, R_FAKE_DEALLOC_ALL,
} req_kind_t;

#define F_SWALLOW 1u      /* pgshim's own message: the reply is not the client's */
#define F_ERR_REPLACE 2u  /* the (certain) error reply becomes 42P05 for cname */
#define F_SET 4u          /* Parse added st to the server set: undone if it does not run */
#define F_MAP 8u          /* Parse mapped cname -> st: undone if it does not run */
#define F_RESTORE 16u     /* Close/DEALLOCATE unmapped cname -> st: restored if dropped */
#define F_EVICT 32u       /* Close evicted st from the set: re-added if dropped */

typedef struct ps_req {
    uint8_t kind, flags;
    ps_stmt_t *st;              /* referenced */
    char *cname;                /* client statement name (owned), for undo and errors */
} ps_req_t;

struct px_ps_server {
    ps_item_t *items;
    size_t n, cap;
    ps_req_t *q;                /* ring */
    size_t qhead, qn, qcap;
    bool skipping;              /* an error emptied the FIFO before a Sync: server skips to Sync */
    bool dirty;                 /* statements may exist that the set does not list */
    uint64_t batch, clock;
};

static size_t set_cap(void)
{
    return px_cfg->max_prepared_statements > 0 ? (size_t)px_cfg->max_prepared_statements
                                               : PX_PS_DEFAULT_MAX;
}

static px_ps_server_t *server_ps(px_server_t *s)
{
    if (s->ps == NULL)
        s->ps = calloc(1, sizeof(*s->ps));
    return s->ps;
}

static long set_find(const px_ps_server_t *p, const ps_stmt_t *st)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->items[i].st == st)
            return (long)i;
    return -1;
}

static void set_remove_at(px_ps_server_t *p, size_t i)
{
    stmt_unref(p->items[i].st);
    p->items[i] = p->items[--p->n];
}

static void set_remove(px_ps_server_t *p, const ps_stmt_t *st)
{
    long i = set_find(p, st);
    if (i >= 0)
        set_remove_at(p, (size_t)i);
}

static bool set_append(px_ps_server_t *p, ps_stmt_t *st)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 16;
        ps_item_t *it = realloc(p->items, nc * sizeof(*it));
        if (it == NULL)
            return false;
        p->items = it;
        p->cap = nc;
    }
    p->items[p->n].st = stmt_ref(st);
    p->items[p->n].used = ++p->clock;
    p->items[p->n].batch = p->batch;
    p->n++;
    return true;
}

static void set_clear(px_ps_server_t *p)
{
    while (p->n > 0)
        set_remove_at(p, p->n - 1);
}

static void req_free(ps_req_t *r)
{
    stmt_unref(r->st);
    free(r->cname);
    r->st = NULL;
    r->cname = NULL;
}

static ps_req_t *q_head(px_ps_server_t *p) { return p->qn > 0 ? &p->q[p->qhead] : NULL; }
static ps_req_t *q_at(px_ps_server_t *p, size_t i) { return &p->q[(p->qhead + i) % p->qcap]; }

static void q_pop(px_ps_server_t *p)
{
    req_free(&p->q[p->qhead]);
    p->qhead = (p->qhead + 1) % p->qcap;
    p->qn--;
}

/* A request PostgreSQL will not run (skipped after an error) or that failed: its effect on the
 * client's map and the server's set is taken back. */
static void req_undo(px_server_t *s, const ps_req_t *r)
{
    px_ps_server_t *p = s->ps;
    px_ps_client_t *m = s->client != NULL ? s->client->ps : NULL;
    if ((r->flags & F_SET) && r->st != NULL)
        set_remove(p, r->st);
    if ((r->flags & F_EVICT) && r->st != NULL && set_find(p, r->st) < 0)
        (void)set_append(p, r->st);
    if (r->cname == NULL || m == NULL)
        return;
    size_t len = strlen(r->cname);
    if ((r->flags & F_MAP) && map_get(m, r->cname, len) == r->st)
        map_del(m, r->cname, len);
    if ((r->flags & F_RESTORE) && r->st != NULL && map_get(m, r->cname, len) == NULL)
        (void)map_put(m, r->cname, len, r->st);
}

static bool is_fake(uint8_t kind) { return kind >= R_FAKE_PARSE; }

/* Queues what the server (or pgshim) answers next. Takes ownership of cname and of one reference
 * to st. While the server skips to the next Sync, anything else is dropped at once. */
static void q_push(px_server_t *s, req_kind_t kind, uint8_t flags, ps_stmt_t *st, char *cname)
{
    px_ps_server_t *p = s->ps;
    ps_req_t r = {(uint8_t)kind, flags, st, cname};
    if (kind == R_SYNC)
        p->skipping = false;
    else if (p->skipping) {
        req_undo(s, &r);
        req_free(&r);
        return;
    }
    if (kind == R_SYNC || kind == R_QUERY || kind == R_FCALL)
        p->batch++;
    if (p->qn == p->qcap) {
        size_t nc = p->qcap ? p->qcap * 2 : 16;
        ps_req_t *q = malloc(nc * sizeof(*q));
        if (q == NULL) {
            req_free(&r);
            px_server_close(s, "out of memory");
            return;
        }
        for (size_t i = 0; i < p->qn; i++)
            q[i] = *q_at(p, i);
        free(p->q);
        p->q = q;
        p->qhead = 0;
        p->qcap = nc;
    }
    p->q[(p->qhead + p->qn) % p->qcap] = r;
    p->qn++;
    if (is_fake(kind) && p->qn == 1 && s->msg_left == 0)
        (void)px_ps_emit_fakes(s);
}

static char *dup_name(const char *name, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy != NULL) {
        memcpy(copy, name, len);
        copy[len] = '\0';
    }
    return copy;
}

bool px_ps_server_quiet(const px_server_t *s) { return s->ps == NULL || s->ps->qn == 0; }

void px_ps_server_free(px_server_t *s)
{
    px_ps_server_t *p = s->ps;
    if (p == NULL)
        return;
    while (p->qn > 0)
        q_pop(p);
    set_clear(p);
    free(p->q);
    free(p->items);
    free(p);
    s->ps = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Words in SQL text
 * ------------------------------------------------------------------------------------------- */

static bool word_char(char ch) { return isalnum((unsigned char)ch) || ch == '_' || ch == '$'; }

/* Whether `first` is followed (as whole words, maybe with `mid` between) by `then`. */
static bool has_words(const char *s, size_t len, const char *first, const char *mid,
                      const char *then)
{
    size_t fl = strlen(first);
    for (size_t i = 0; i + fl <= len; i++) {
        if ((i > 0 && word_char(s[i - 1])) || strncasecmp(s + i, first, fl) != 0 ||
            (i + fl < len && word_char(s[i + fl])))
            continue;
        if (then == NULL)
            return true;
        size_t j = i + fl;
        for (int k = 0; k < 2; k++) {
            while (j < len && isspace((unsigned char)s[j]))
                j++;
            const char *w = k == 0 && mid != NULL ? mid : then;
            size_t wl = strlen(w);
            if (j + wl <= len && strncasecmp(s + j, w, wl) == 0 &&
                (j + wl == len || !word_char(s[j + wl]))) {
                if (w == then)
                    return true;
                j += wl;
            } else if (w == then) {
                break;
            }
        }
    }
    return false;
}

/*
 * `DEALLOCATE [PREPARE] name|ALL [;]` exactly (any case and spacing, name quoted or not). Fills
 * name (folded to lower case when unquoted) and *all. Returns false for anything else.
 */
static bool parse_deallocate(const char *s, size_t len, char *name, size_t cap, size_t *nlen,
                             bool *all)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    if (len - i < 10 || strncasecmp(s + i, "deallocate", 10) != 0)
        return false;
    i += 10;
    size_t j = i;
    while (j < len && isspace((unsigned char)s[j]))
        j++;
    if (j == i)
        return false;
    i = j;
    if (len - i > 7 && strncasecmp(s + i, "prepare", 7) == 0 && isspace((unsigned char)s[i + 7])) {
        i += 7;
        while (i < len && isspace((unsigned char)s[i]))
            i++;
    }
    size_t n = 0;
    bool quoted = false;
    if (i < len && s[i] == '"') {
        quoted = true;
        for (i++; i < len; i++) {
            if (s[i] == '"') {
                if (i + 1 < len && s[i + 1] == '"') {
                    i++;
                } else {
                    break;
                }
            }
            if (n + 1 >= cap)
                return false;
            name[n++] = s[i];
        }
        if (i >= len)
            return false;
        i++;
    } else {
        if (i >= len || !(isalpha((unsigned char)s[i]) || s[i] == '_'))
            return false;
        while (i < len && word_char(s[i])) {
            if (n + 1 >= cap)
                return false;
            name[n++] = (char)tolower((unsigned char)s[i]);
            i++;
        }
    }
    name[n] = '\0';
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    if (i < len && s[i] == ';')
        i++;
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    if (i != len || n == 0)
        return false;
    *nlen = n;
    *all = !quoted && strcmp(name, "all") == 0;
    return true;
}

/* SQL the client sends through (Query or unnamed Parse): a DISCARD or DEALLOCATE in it may drop
 * statements on the server, so the set is forgotten and the server marked dirty; DISCARD ALL and
 * DEALLOCATE ALL drop the client's own names too. */
static void note_sql(px_client_t *c, px_server_t *s, const char *sql, size_t len)
{
    if (!has_words(sql, len, "discard", NULL, NULL) && !has_words(sql, len, "deallocate", NULL, NULL))
        return;
    if (s->ps != NULL && (s->ps->n > 0 || !s->ps->dirty)) {
        px_log_debug("S-%llu: statement may drop prepared statements; forgetting %zu",
                     (unsigned long long)s->id, s->ps->n);
        set_clear(s->ps);
        s->ps->dirty = true;
    } else if (s->ps == NULL && server_ps(s) != NULL) {
        s->ps->dirty = true;
    }
    if (has_words(sql, len, "discard", NULL, "all") ||
        has_words(sql, len, "deallocate", "prepare", "all"))
        map_clear(c->ps);
}

void px_ps_server_internal_query(px_server_t *s, const char *sql)
{
    size_t len = strlen(sql);
    if (s->ps == NULL || (!has_words(sql, len, "discard", NULL, NULL) &&
                          !has_words(sql, len, "deallocate", NULL, NULL)))
        return;
    set_clear(s->ps);
    /* pgshim's own DISCARD ALL either works (the server is then empty) or closes the server. */
    while (len > 0 && (isspace((unsigned char)sql[len - 1]) || sql[len - 1] == ';'))
        len--;
    s->ps->dirty = !(len == 11 && strncasecmp(sql, "discard all", 11) == 0);
}

/* ---------------------------------------------------------------------------------------------
 * Writing to the server
 * ------------------------------------------------------------------------------------------- */

static bool send_buf(px_server_t *s, pgw_buf_t *b)
{
    bool ok = !pgw_buf_failed(b) && px_io_write(&s->io, b->data, b->len) == 0;
    pgw_buf_free(b);
    return ok;
}

/* Close('S', st) that pgshim sends for itself; its CloseComplete is swallowed. */
static bool send_close(px_server_t *s, ps_stmt_t *st, uint8_t flags)
{
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_build_close(&b, 'S', st->name);
    if (!send_buf(s, &b))
        return false;
    px_client__note_forwarded(s, PGW_MSG_CLOSE);
    q_push(s, R_CLOSE, F_SWALLOW | flags, stmt_ref(st), NULL);
    return s->state != PX_SV_CLOSING;
}

/* Makes room in the server's set: the least recently used entry not used in the open batch is
 * closed on the server (a statement in use there may back the portal of a pending Execute). */
static bool evict_for_room(px_server_t *s)
{
    px_ps_server_t *p = s->ps;
    while (p->n >= set_cap()) {
        long victim = -1;
        for (size_t i = 0; i < p->n; i++)
            if (p->items[i].batch != p->batch &&
                (victim < 0 || p->items[i].used < p->items[victim].used))
                victim = (long)i;
        if (victim < 0)
            return true;  /* all in use by this batch: over the bound until a later Parse */
        ps_stmt_t *st = stmt_ref(p->items[victim].st);
        px_log_debug("S-%llu: evicting prepared statement %s", (unsigned long long)s->id, st->name);
        set_remove_at(p, (size_t)victim);
        bool ok = send_close(s, st, F_EVICT);
        stmt_unref(st);
        if (!ok)
            return false;
    }
    return true;
}

/* Parse(st) to the server, preceded by an eviction and, on a dirty server, by a Close of the same
 * name. The set lists st afterwards; the Parse request is queued with `flags` (| F_SET). */
static bool send_parse(px_server_t *s, ps_stmt_t *st, uint8_t flags, char *cname)
{
    px_ps_server_t *p = s->ps;
    if (!evict_for_room(s) || (p->dirty && !send_close(s, st, 0)) || !set_append(p, st)) {
        free(cname);
        return false;
    }
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_build_parse(&b, st->name, st->sql, st->oids, st->noids);
    if (!send_buf(s, &b)) {
        free(cname);
        return false;
    }
    px_client__note_forwarded(s, PGW_MSG_PARSE);
    q_push(s, R_PARSE, flags | F_SET, stmt_ref(st), cname);
    return s->state != PX_SV_CLOSING;
}

/* The server must have st before a Bind or Describe of it. */
static bool ensure_prepared(px_server_t *s, ps_stmt_t *st)
{
    px_ps_server_t *p = s->ps;
    long i = set_find(p, st);
    if (i >= 0) {
        p->items[i].used = ++p->clock;
        p->items[i].batch = p->batch;
        return true;
    }
    px_log_debug("S-%llu: preparing %s for C-%llu on this server", (unsigned long long)s->id,
                 st->name, s->client != NULL ? (unsigned long long)s->client->id : 0ULL);
    return send_parse(s, st, F_SWALLOW, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Client messages
 * ------------------------------------------------------------------------------------------- */

static void oom(px_client_t *c) { px_client_fatal(c, "53200", "out of memory"); }

static ssize_t client_parse(px_client_t *c, px_server_t *s, const pgw_frame_t *whole,
                            const pgw_parse_t *parse)
{
    px_ps_client_t *m = c->ps;
    px_ps_server_t *p = s->ps;
    char *cname = dup_name(parse->name.ptr, parse->name.len);
    if (cname == NULL) {
        oom(c);
        return PX_PS_CLOSED;
    }
    if (map_get(m, parse->name.ptr, parse->name.len) != NULL) {
        /* PostgreSQL's answer is an ErrorResponse that makes the server skip to Sync. A Parse
         * that is certain to fail gets the server into exactly that state; its error is replaced
         * with the one PostgreSQL would have sent about the client's name. */
        pgw_buf_t b;
        pgw_buf_init(&b);
        pgw_build_parse(&b, "pgshim_duplicate", "SELECT pgshim_duplicate_statement_name", NULL, 0);
        if (!send_buf(s, &b)) {
            free(cname);
            oom(c);
            return PX_PS_CLOSED;
        }
        px_client__note_forwarded(s, PGW_MSG_PARSE);
        q_push(s, R_PARSE, F_ERR_REPLACE, NULL, cname);
        return s->state == PX_SV_CLOSING ? PX_PS_CLOSED : (ssize_t)whole->total_len;
    }
    ps_stmt_t *st = reg_get(parse);
    if (st == NULL || !map_put(m, parse->name.ptr, parse->name.len, st)) {
        stmt_unref(st);
        free(cname);
        oom(c);
        return PX_PS_CLOSED;
    }
    long i = set_find(p, st);
    if (i >= 0) {
        /* The server has it already (prepared for this or another client): answer in order. */
        p->items[i].used = ++p->clock;
        p->items[i].batch = p->batch;
        s->unsynced = true;
        q_push(s, R_FAKE_PARSE, F_MAP, st, cname);
        return s->state == PX_SV_CLOSING ? PX_PS_CLOSED : (ssize_t)whole->total_len;
    }
    bool ok = send_parse(s, st, F_MAP, cname);
    stmt_unref(st);
    if (!ok) {
        if (s->state != PX_SV_CLOSING)
            oom(c);
        return PX_PS_CLOSED;
    }
    return (ssize_t)whole->total_len;
}

/* Offset just past the NUL of the C string starting at off, within [off, end), or 0. */
static size_t cstr_end(const uint8_t *data, size_t off, size_t end)
{
    if (off >= end)
        return 0;
    const uint8_t *z = memchr(data + off, 0, end - off);
    return z != NULL ? (size_t)(z - data) + 1 : 0;
}

static ssize_t client_bind(px_client_t *c, px_server_t *s, const pgw_frame_t *f,
                           const uint8_t *data, size_t len, uint32_t *stream_left)
{
    size_t end = len < f->total_len ? len : f->total_len;
    size_t portal_end = cstr_end(data, 5, end);
    size_t name_end = portal_end ? cstr_end(data, portal_end, end) : 0;
    if (name_end == 0)
        return len < f->total_len ? PX_PS_NEEDMORE : PX_PS_PASS;
    size_t nlen = name_end - portal_end - 1;
    ps_stmt_t *st = nlen > 0 ? map_get(c->ps, (const char *)data + portal_end, nlen) : NULL;
    if (st == NULL)
        return PX_PS_PASS;  /* unnamed, or unknown: PostgreSQL's own answer names it */
    if (!ensure_prepared(s, st)) {
        if (s->state != PX_SV_CLOSING)
            oom(c);
        return PX_PS_CLOSED;
    }
    size_t newlen = strlen(st->name);
    uint32_t body = f->total_len - 1 - (uint32_t)nlen + (uint32_t)newlen;
    uint8_t hdr[5] = {data[0], (uint8_t)(body >> 24), (uint8_t)(body >> 16), (uint8_t)(body >> 8),
                      (uint8_t)body};
    if (px_io_write(&s->io, hdr, 5) < 0 || px_io_write(&s->io, data + 5, portal_end - 5) < 0 ||
        px_io_write(&s->io, st->name, newlen + 1) < 0) {
        oom(c);
        return PX_PS_CLOSED;
    }
    px_client__note_forwarded(s, PGW_MSG_BIND);
    q_push(s, R_BIND, 0, NULL, NULL);
    if (s->state == PX_SV_CLOSING)
        return PX_PS_CLOSED;
    *stream_left = f->total_len - (uint32_t)name_end;
    return (ssize_t)name_end;
}

static ssize_t client_describe(px_client_t *c, px_server_t *s, const pgw_frame_t *f,
                               const uint8_t *data)
{
    pgw_target_t t;
    ps_stmt_t *st = NULL;
    bool ok;
    if (pgw_decode_describe(f, &t) == 0 && t.kind == 'S' && t.name.len > 0)
        st = map_get(c->ps, t.name.ptr, t.name.len);
    if (st != NULL) {
        if (!ensure_prepared(s, st)) {
            if (s->state != PX_SV_CLOSING)
                oom(c);
            return PX_PS_CLOSED;
        }
        pgw_buf_t b;
        pgw_buf_init(&b);
        pgw_build_describe(&b, 'S', st->name);
        ok = send_buf(s, &b);
    } else {
        ok = px_io_write(&s->io, data, f->total_len) == 0;
    }
    if (!ok) {
        oom(c);
        return PX_PS_CLOSED;
    }
    px_client__note_forwarded(s, PGW_MSG_DESCRIBE);
    bool portal = f->total_len > 5 && data[5] == 'P';
    q_push(s, portal ? R_DESC_P : R_DESC_S, 0, NULL, NULL);
    return s->state == PX_SV_CLOSING ? PX_PS_CLOSED : (ssize_t)f->total_len;
}

static ssize_t client_close(px_client_t *c, px_server_t *s, const pgw_frame_t *f)
{
    pgw_target_t t;
    if (pgw_decode_close(f, &t) != 0 || t.kind != 'S' || t.name.len == 0)
        return PX_PS_PASS;
    /* The server keeps the statement for others; the client's name goes. Closing a name that
     * does not exist is not an error in PostgreSQL either. */
    char *cname = dup_name(t.name.ptr, t.name.len);
    if (cname == NULL) {
        oom(c);
        return PX_PS_CLOSED;
    }
    ps_stmt_t *st = stmt_ref(map_get(c->ps, t.name.ptr, t.name.len));
    map_del(c->ps, t.name.ptr, t.name.len);
    s->unsynced = true;
    q_push(s, R_FAKE_CLOSE, st != NULL ? F_RESTORE : 0, st, cname);
    return s->state == PX_SV_CLOSING ? PX_PS_CLOSED : (ssize_t)f->total_len;
}

/* DEALLOCATE of tracked names: the map changes; the answer comes from fake requests (linked) or
 * at once (idle). Returns the kind of fake to queue, or -1 when the Query is not one of those. */
static int client_deallocate(px_client_t *c, const char *sql, size_t len, ps_stmt_t **st_out,
                             char **cname_out)
{
    char name[256];
    size_t nlen = 0;
    bool all = false;
    *st_out = NULL;
    *cname_out = NULL;
    if (!parse_deallocate(sql, len, name, sizeof(name), &nlen, &all))
        return -1;
    if (all) {
        map_clear(c->ps);
        return R_FAKE_DEALLOC_ALL;
    }
    ps_stmt_t *st = map_get(c->ps, name, nlen);
    if (st == NULL)
        return -1;  /* PostgreSQL's 26000 names it */
    *cname_out = dup_name(name, nlen);
    *st_out = stmt_ref(st);
    map_del(c->ps, name, nlen);
    return R_FAKE_DEALLOC;
}

static ssize_t client_query(px_client_t *c, px_server_t *s, const pgw_frame_t *f)
{
    pgw_query_t q;
    if (pgw_decode_query(f, &q) != 0)
        return PX_PS_PASS;
    ps_stmt_t *st;
    char *cname;
    int kind = client_deallocate(c, q.sql.ptr, q.sql.len, &st, &cname);
    if (kind < 0) {
        note_sql(c, s, q.sql.ptr, q.sql.len);
        return PX_PS_PASS;
    }
    px_log_debug("C-%llu: DEALLOCATE answered by pgshim", (unsigned long long)c->id);
    q_push(s, (req_kind_t)kind, st != NULL && cname != NULL ? F_RESTORE : 0, st, cname);
    return s->state == PX_SV_CLOSING ? PX_PS_CLOSED : (ssize_t)f->total_len;
}

/* psycopg 3.1 evicts from its cache with DEALLOCATE sent in the extended protocol (unnamed
 * Parse, Bind, Execute). The client's name goes; the server runs a DEALLOCATE of a throw-away
 * statement pgshim prepares right before, so every reply the client gets is PostgreSQL's own. */
#define PS_DEALLOC_DUMMY "pgshim_deallocate"

static bool send_simple_msg(px_server_t *s, bool parse)
{
    pgw_buf_t b;
    pgw_buf_init(&b);
    if (parse)
        pgw_build_parse(&b, PS_DEALLOC_DUMMY, "SELECT 1", NULL, 0);
    else
        pgw_build_close(&b, 'S', PS_DEALLOC_DUMMY);
    if (!send_buf(s, &b))
        return false;
    px_client__note_forwarded(s, parse ? PGW_MSG_PARSE : PGW_MSG_CLOSE);
    q_push(s, parse ? R_PARSE : R_CLOSE, F_SWALLOW, NULL, NULL);
    return s->state != PX_SV_CLOSING;
}

static ssize_t client_unnamed_deallocate(px_client_t *c, px_server_t *s, const pgw_frame_t *whole,
                                         const pgw_parse_t *parse)
{
    char name[256];
    size_t nlen = 0;
    bool all = false;
    if (!parse_deallocate(parse->sql.ptr, parse->sql.len, name, sizeof(name), &nlen, &all) || all)
        return PX_PS_PASS;
    ps_stmt_t *st = map_get(c->ps, name, nlen);
    if (st == NULL)
        return PX_PS_PASS;  /* not ours: PostgreSQL answers (26000) */
    char *cname = dup_name(name, nlen);
    if (cname == NULL || !send_simple_msg(s, false) || !send_simple_msg(s, true)) {
        free(cname);
        if (s->state != PX_SV_CLOSING)
            oom(c);
        return PX_PS_CLOSED;
    }
    st = stmt_ref(st);
    map_del(c->ps, name, nlen);
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_build_parse(&b, "", "DEALLOCATE " PS_DEALLOC_DUMMY, NULL, 0);
    if (!send_buf(s, &b)) {
        stmt_unref(st);
        free(cname);
        oom(c);
        return PX_PS_CLOSED;
    }
    px_log_debug("C-%llu: DEALLOCATE %s (extended protocol) taken by pgshim",
                 (unsigned long long)c->id, cname);
    px_client__note_forwarded(s, PGW_MSG_PARSE);
    q_push(s, R_PARSE, F_RESTORE, st, cname);
    return s->state == PX_SV_CLOSING ? PX_PS_CLOSED : (ssize_t)whole->total_len;
}

ssize_t px_ps_client_msg(px_client_t *c, const pgw_frame_t *f, const uint8_t *data, size_t len,
                         uint32_t *stream_left)
{
    px_server_t *s = c->server;
    if (client_ps(c) == NULL || server_ps(s) == NULL) {
        oom(c);
        return PX_PS_CLOSED;
    }
    pgw_frame_t whole;
    size_t need;
    switch (f->type) {
    case PGW_MSG_PARSE: {
        size_t end = len < f->total_len ? len : f->total_len;
        size_t name_end = cstr_end(data, 5, end);
        if (name_end == 0)
            return len < f->total_len ? PX_PS_NEEDMORE : PX_PS_PASS;
        bool unnamed = name_end == 6;
        if (unnamed && f->total_len > PX_PS_QUERY_LOOK)
            return PX_PS_PASS;  /* too big to be a DISCARD; streams through */
        if (len < f->total_len)
            return PX_PS_NEEDMORE;
        pgw_parse_t parse;
        if (pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data, len, &whole, &need) <= 0 ||
            pgw_decode_parse(&whole, &parse) != 0)
            return PX_PS_PASS;  /* PostgreSQL rejects it */
        if (unnamed) {
            ssize_t r = client_unnamed_deallocate(c, s, &whole, &parse);
            if (r != PX_PS_PASS)
                return r;
            note_sql(c, s, parse.sql.ptr, parse.sql.len);
            return PX_PS_PASS;
        }
        return client_parse(c, s, &whole, &parse);
    }
    case PGW_MSG_BIND:
        return client_bind(c, s, f, data, len, stream_left);
    case PGW_MSG_DESCRIBE:
    case PGW_MSG_CLOSE:
    case PGW_MSG_QUERY:
        if (f->type == PGW_MSG_QUERY && f->total_len > PX_PS_QUERY_LOOK)
            return PX_PS_PASS;
        if (len < f->total_len)
            return PX_PS_NEEDMORE;
        if (pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data, len, &whole, &need) <= 0)
            return PX_PS_PASS;
        if (f->type == PGW_MSG_DESCRIBE)
            return client_describe(c, s, &whole, data);
        if (f->type == PGW_MSG_CLOSE)
            return client_close(c, s, &whole);
        return client_query(c, s, &whole);
    default:
        return PX_PS_PASS;
    }
}

ssize_t px_ps_client_idle_query(px_client_t *c, const pgw_frame_t *f, const uint8_t *data,
                                size_t len)
{
    if (f->total_len > PX_PS_QUERY_LOOK || c->ps == NULL)
        return PX_PS_PASS;
    if (len < f->total_len)
        return PX_PS_NEEDMORE;
    pgw_frame_t whole;
    size_t need;
    pgw_query_t q;
    if (pgw_frame_next(PGW_PHASE_NORMAL, PGW_F, data, len, &whole, &need) <= 0 ||
        pgw_decode_query(&whole, &q) != 0)
        return PX_PS_PASS;
    ps_stmt_t *st;
    char *cname;
    int kind = client_deallocate(c, q.sql.ptr, q.sql.len, &st, &cname);
    if (kind < 0)
        return PX_PS_PASS;
    stmt_unref(st);
    free(cname);
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_build_command_complete(&b, kind == R_FAKE_DEALLOC_ALL ? "DEALLOCATE ALL" : "DEALLOCATE");
    pgw_build_ready(&b, (uint8_t)'I');
    bool ok = !pgw_buf_failed(&b) && px_io_write(&c->io, b.data, b.len) == 0;
    pgw_buf_free(&b);
    if (!ok) {
        oom(c);
        return PX_PS_CLOSED;
    }
    return (ssize_t)whole.total_len;
}

void px_ps_note_forward(px_server_t *s, pgw_msg_t type, bool counted_sync)
{
    if (server_ps(s) == NULL) {
        px_server_close(s, "out of memory");
        return;
    }
    switch (type) {
    case PGW_MSG_PARSE: q_push(s, R_PARSE, 0, NULL, NULL); break;
    case PGW_MSG_BIND: q_push(s, R_BIND, 0, NULL, NULL); break;
    case PGW_MSG_EXECUTE: q_push(s, R_EXEC, 0, NULL, NULL); break;
    case PGW_MSG_CLOSE: q_push(s, R_CLOSE, 0, NULL, NULL); break;
    case PGW_MSG_QUERY: q_push(s, R_QUERY, 0, NULL, NULL); break;
    case PGW_MSG_FUNCTION_CALL: q_push(s, R_FCALL, 0, NULL, NULL); break;
    case PGW_MSG_SYNC:
        if (counted_sync)
            q_push(s, R_SYNC, 0, NULL, NULL);
        break;
    case PGW_MSG_DESCRIBE:  /* only one px_ps_client_msg could not decode: PostgreSQL errors */
        q_push(s, R_DESC_S, 0, NULL, NULL);
        break;
    default:
        break;  /* Flush, CopyData/CopyDone/CopyFail: no reply of their own */
    }
}

/* ---------------------------------------------------------------------------------------------
 * Server replies
 * ------------------------------------------------------------------------------------------- */

bool px_ps_fake_due(const px_server_t *s)
{
    return s->ps != NULL && s->ps->qn > 0 && is_fake(s->ps->q[s->ps->qhead].kind);
}

bool px_ps_swallows_next(const px_server_t *s)
{
    return s->ps != NULL && s->ps->qn > 0 &&
           (s->ps->q[s->ps->qhead].flags & (F_SWALLOW | F_ERR_REPLACE)) != 0;
}

bool px_ps_emit_fakes(px_server_t *s)
{
    px_ps_server_t *p = s->ps;
    px_client_t *c = s->client;
    bool ready = false;
    if (p == NULL || c == NULL)
        return false;
    for (ps_req_t *r; (r = q_head(p)) != NULL && is_fake(r->kind);) {
        uint8_t mem[64];
        pgw_buf_t b;
        pgw_buf_init_fixed(&b, mem, sizeof(mem));
        switch (r->kind) {
        case R_FAKE_PARSE: pgw_build_parse_complete(&b); break;
        case R_FAKE_CLOSE: pgw_build_close_complete(&b); break;
        default:
            pgw_build_command_complete(&b, r->kind == R_FAKE_DEALLOC_ALL ? "DEALLOCATE ALL"
                                                                         : "DEALLOCATE");
            pgw_build_ready(&b, s->last_status ? s->last_status : (uint8_t)'I');
            ready = true;
            break;
        }
        q_pop(p);
        if (pgw_buf_failed(&b) || px_io_write(&c->io, b.data, b.len) < 0) {
            oom(c);
            return false;
        }
    }
    return ready;
}

/* ErrorResponse in the extended protocol: the head request failed, and the server skips every
 * message up to the next Sync. */
static void error_skip(px_server_t *s)
{
    px_ps_server_t *p = s->ps;
    req_undo(s, q_head(p));
    q_pop(p);
    size_t dropped = 0;
    for (ps_req_t *r; (r = q_head(p)) != NULL && r->kind != R_SYNC; dropped++) {
        req_undo(s, r);
        q_pop(p);
    }
    if (p->qn == 0)
        p->skipping = true;
    if (dropped > 0)
        px_log_noise("S-%llu: error; %zu queued replies skipped to Sync", (unsigned long long)s->id,
                     dropped);
}

/* COPY FROM STDIN began: PostgreSQL ignores the Syncs that followed the Execute (see
 * note_copy_in in server.c), so they will not be answered. */
static void copy_in_started(px_ps_server_t *p)
{
    while (p->qn > 1 && q_at(p, 1)->kind == R_SYNC) {
        req_free(q_at(p, 1));
        for (size_t i = 1; i + 1 < p->qn; i++)
            *q_at(p, i) = *q_at(p, i + 1);
        p->qn--;
    }
}

static int replace_error(px_server_t *s, const ps_req_t *r)
{
    char msg[400];
    snprintf(msg, sizeof(msg), "prepared statement \"%s\" already exists", r->cname ? r->cname : "");
    pgw_buf_t b;
    pgw_buf_init(&b);
    pgw_build_error(&b, "ERROR", "42P05", msg, NULL, NULL);
    bool ok = !pgw_buf_failed(&b) && px_io_write(&s->client->io, b.data, b.len) == 0;
    pgw_buf_free(&b);
    if (!ok)
        oom(s->client);
    return PX_PS_SWALLOW;
}

int px_ps_server_msg(px_server_t *s, pgw_msg_t type)
{
    px_ps_server_t *p = s->ps;
    ps_req_t *r = p != NULL ? q_head(p) : NULL;
    if (type == PGW_MSG_NOTICE_RESPONSE || type == PGW_MSG_PARAMETER_STATUS ||
        type == PGW_MSG_NOTIFICATION_RESPONSE)
        return PX_PS_FORWARD;
    if (r == NULL)
        return PX_PS_FORWARD;  /* nothing owed (e.g. a FATAL on termination): as it comes */
    if (is_fake(r->kind))
        goto mismatch;
    uint8_t kind = r->kind, flags = r->flags;
    int act = (flags & (F_SWALLOW | F_ERR_REPLACE)) ? PX_PS_SWALLOW : PX_PS_FORWARD;
    if (type == PGW_MSG_ERROR_RESPONSE && kind != R_SYNC && kind != R_QUERY && kind != R_FCALL) {
        /* An error about pgshim's own Parse is the client's business (its Bind cannot run). */
        int out = (flags & F_ERR_REPLACE) ? replace_error(s, r) : PX_PS_FORWARD;
        error_skip(s);
        return out;
    }
    switch (kind) {
    case R_PARSE:
        if (type != PGW_MSG_PARSE_COMPLETE)
            goto mismatch;
        q_pop(p);
        return act;
    case R_BIND:
        if (type != PGW_MSG_BIND_COMPLETE)
            goto mismatch;
        q_pop(p);
        return act;
    case R_DESC_S:
        if (type == PGW_MSG_PARAMETER_DESCRIPTION) {
            r->kind = R_DESC_P;
            return act;
        }
        if (type != PGW_MSG_ROW_DESCRIPTION && type != PGW_MSG_NO_DATA)
            goto mismatch;
        q_pop(p);
        return act;
    case R_DESC_P:
        if (type != PGW_MSG_ROW_DESCRIPTION && type != PGW_MSG_NO_DATA)
            goto mismatch;
        q_pop(p);
        return act;
    case R_EXEC:
        switch (type) {
        case PGW_MSG_COMMAND_COMPLETE:
        case PGW_MSG_EMPTY_QUERY_RESPONSE:
        case PGW_MSG_PORTAL_SUSPENDED:
            q_pop(p);
            return act;
        case PGW_MSG_COPY_IN_RESPONSE:
            copy_in_started(p);
            return act;
        case PGW_MSG_DATA_ROW:
        case PGW_MSG_COPY_OUT_RESPONSE:
        case PGW_MSG_COPY_BOTH_RESPONSE:
        case PGW_MSG_COPY_DATA:
        case PGW_MSG_COPY_DONE:
            return act;
        default:
            goto mismatch;
        }
    case R_CLOSE:
        if (type != PGW_MSG_CLOSE_COMPLETE)
            goto mismatch;
        q_pop(p);
        return act;
    case R_SYNC:
        if (type == PGW_MSG_READY_FOR_QUERY)
            q_pop(p);
        else if (type != PGW_MSG_ERROR_RESPONSE)
            goto mismatch;
        return act;
    case R_QUERY:
    case R_FCALL:
        if (type == PGW_MSG_READY_FOR_QUERY)
            q_pop(p);
        else if (type == PGW_MSG_COPY_IN_RESPONSE)
            copy_in_started(p);
        return act;
    default:
        break;
    }
mismatch:
    px_log_warn("S-%llu: reply %s does not match what was sent (prepared statement tracking)",
                (unsigned long long)s->id, pgw_msg_name(type));
    return -1;
}
