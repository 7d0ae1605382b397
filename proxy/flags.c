/*
 * flags: the interception mode and cache TTL of every (tenant, function), the per-(tenant,
 * function) counters behind SHOW INTERCEPTS, and the pass-through candidates behind SHOW
 * INTERCEPT CANDIDATES.
 *
 * A flag set keeps each scope ([intercept] defaults, one [tenant.NAME] each) as written (a mode
 * or TTL per function, per family and for `all`, each possibly unset) plus the values resolved
 * from them. Resolution order for (tenant, fn): the tenant's function key, its family key, its
 * `all`, then the same three of the defaults, then the built-in default (mode off, TTL 60 s for
 * the jobs family and 300 s otherwise). Resolved values are recomputed after every change, so
 * px_flags_mode is a lookup.
 *
 * Invariants: the running set (g_flags) is replaced only as a whole by px_flags_install (one
 * pointer store on the single-threaded loop), or changed in place by px_flags_set between two
 * statements; readers never see a half-built set. Stats entries live for the process lifetime,
 * so pointers returned by px_stats_get stay valid.
 */
#include "px_admin.h"
#include "px_intercept.h"
#include "px_log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------------
 * Modes
 * ------------------------------------------------------------------------------------------- */

static const char *const mode_names[] = {
#define PX__MODE_NAME(name, text) text,
    PX_MODE_MAP(PX__MODE_NAME)
#undef PX__MODE_NAME
};

const char *px_mode_name(px_mode_t m)
{
    return (unsigned)m < PX_MODE__COUNT ? mode_names[m] : "?";
}

int px_mode_lookup(const char *name)
{
    for (int i = 0; i < PX_MODE__COUNT; i++)
        if (strcmp(name, mode_names[i]) == 0)
            return i;
    return -1;
}

/* ---------------------------------------------------------------------------------------------
 * Flag sets
 * ------------------------------------------------------------------------------------------- */

#define UNSET (-1)

/* One scope as written; every field UNSET when the file does not mention it. */
typedef struct layer {
    int mode_all, mode_fam[RW_FAM__COUNT], mode_fn[RW_FN__COUNT];
    long ttl_all, ttl_fam[RW_FAM__COUNT], ttl_fn[RW_FN__COUNT];
} layer_t;

typedef struct scope {
    char *name;                       /* tenant name, "*" for the defaults */
    layer_t layer;
    px_mode_t mode[RW_FN__COUNT];     /* resolved */
    uint32_t ttl[RW_FN__COUNT];
    uint64_t changed_at[RW_FN__COUNT];
    const char *changed_how[RW_FN__COUNT];   /* static strings */
} scope_t;

struct px_flagset {
    scope_t defaults;
    scope_t **tenants;   /* configuration order */
    size_t ntenants, cap;
};

/* A run-time change waiting for SAVE. */
typedef struct unsaved {
    char *section, *key, *value;
} unsaved_t;

static px_flagset_t *g_flags;
static unsaved_t *g_unsaved;
static size_t g_nunsaved;
static bool g_installed_once;

static uint64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* Start-up and reload may abort on out-of-memory (STYLE.md); run-time callers check NULL. */
static void die_nomem(void)
{
    px_log_error("out of memory loading interception flags");
    abort();
}

static void layer_init(layer_t *l)
{
    l->mode_all = UNSET;
    l->ttl_all = UNSET;
    for (int i = 0; i < RW_FAM__COUNT; i++) {
        l->mode_fam[i] = UNSET;
        l->ttl_fam[i] = UNSET;
    }
    for (int i = 0; i < RW_FN__COUNT; i++) {
        l->mode_fn[i] = UNSET;
        l->ttl_fn[i] = UNSET;
    }
}

static scope_t *scope_new(const char *name)
{
    scope_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->name = strdup(name);
    if (s->name == NULL) {
        free(s);
        return NULL;
    }
    layer_init(&s->layer);
    for (int i = 0; i < RW_FN__COUNT; i++)
        s->changed_how[i] = "config";
    return s;
}

static void scope_free(scope_t *s)
{
    if (s == NULL)
        return;
    free(s->name);
    free(s);
}

static px_flagset_t *flagset_new(void)
{
    px_flagset_t *fs = calloc(1, sizeof(*fs));
    if (fs == NULL)
        return NULL;
    fs->defaults.name = strdup("*");
    if (fs->defaults.name == NULL) {
        free(fs);
        return NULL;
    }
    layer_init(&fs->defaults.layer);
    for (int i = 0; i < RW_FN__COUNT; i++)
        fs->defaults.changed_how[i] = "config";
    return fs;
}

void px_flags_set_free(px_flagset_t *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->ntenants; i++)
        scope_free(set->tenants[i]);
    free(set->tenants);
    free(set->defaults.name);
    free(set);
}

static scope_t *find_tenant(const px_flagset_t *fs, const char *name)
{
    if (fs == NULL)
        return NULL;
    for (size_t i = 0; i < fs->ntenants; i++)
        if (strcmp(fs->tenants[i]->name, name) == 0)
            return fs->tenants[i];
    return NULL;
}

static scope_t *find_scope(px_flagset_t *fs, const char *name)
{
    if (strcmp(name, "*") == 0)
        return &fs->defaults;
    return find_tenant(fs, name);
}

/* NULL on allocation failure. */
static scope_t *add_tenant(px_flagset_t *fs, const char *name)
{
    if (fs->ntenants == fs->cap) {
        size_t ncap = fs->cap ? fs->cap * 2 : 8;
        scope_t **n = realloc(fs->tenants, ncap * sizeof(*n));
        if (n == NULL)
            return NULL;
        fs->tenants = n;
        fs->cap = ncap;
    }
    scope_t *s = scope_new(name);
    if (s == NULL)
        return NULL;
    fs->tenants[fs->ntenants++] = s;
    return s;
}

static int pick_mode(const layer_t *t, const layer_t *d, rw_fn_t fn)
{
    rw_family_t fam = rw_fn_family(fn);
    const layer_t *ls[2] = {t, d};
    for (int i = 0; i < 2; i++) {
        if (ls[i] == NULL)
            continue;
        if (ls[i]->mode_fn[fn] != UNSET)
            return ls[i]->mode_fn[fn];
        if (ls[i]->mode_fam[fam] != UNSET)
            return ls[i]->mode_fam[fam];
        if (ls[i]->mode_all != UNSET)
            return ls[i]->mode_all;
    }
    return PX_MODE_OFF;
}

static uint32_t pick_ttl(const layer_t *t, const layer_t *d, rw_fn_t fn)
{
    rw_family_t fam = rw_fn_family(fn);
    const layer_t *ls[2] = {t, d};
    for (int i = 0; i < 2; i++) {
        if (ls[i] == NULL)
            continue;
        if (ls[i]->ttl_fn[fn] != UNSET)
            return (uint32_t)ls[i]->ttl_fn[fn];
        if (ls[i]->ttl_fam[fam] != UNSET)
            return (uint32_t)ls[i]->ttl_fam[fam];
        if (ls[i]->ttl_all != UNSET)
            return (uint32_t)ls[i]->ttl_all;
    }
    return fam == RW_FAM_JOBS ? PX_TTL_JOBS_DEFAULT : PX_TTL_DEFAULT;
}

/* Recomputes resolved values; a (scope, fn) whose mode changed is stamped with `how`. */
static void resolve_scope(scope_t *s, const layer_t *defaults, const char *how, uint64_t at)
{
    for (int f = 0; f < RW_FN__COUNT; f++) {
        px_mode_t m = (px_mode_t)pick_mode(&s->layer, defaults, (rw_fn_t)f);
        if (how != NULL && m != s->mode[f]) {
            s->changed_at[f] = at;
            s->changed_how[f] = how;
        }
        s->mode[f] = m;
        s->ttl[f] = pick_ttl(&s->layer, defaults, (rw_fn_t)f);
    }
}

static void resolve_all(px_flagset_t *fs, const char *how)
{
    uint64_t at = now_ms();
    resolve_scope(&fs->defaults, NULL, how, at);
    for (size_t i = 0; i < fs->ntenants; i++)
        resolve_scope(fs->tenants[i], &fs->defaults.layer, how, at);
}

/* The running set; an empty one is made on first use so the engine can ask before the
   configuration is loaded (unit tests, early start-up). */
static px_flagset_t *running(void)
{
    if (g_flags == NULL) {
        g_flags = flagset_new();
        if (g_flags == NULL) {
            px_log_error("out of memory creating interception flags");
            abort();
        }
        resolve_all(g_flags, NULL);
        uint64_t at = now_ms();
        for (int f = 0; f < RW_FN__COUNT; f++)
            g_flags->defaults.changed_at[f] = at;
    }
    return g_flags;
}

/* Scope that applies to a tenant: its own, or the defaults. */
static const scope_t *scope_for(const char *tenant)
{
    px_flagset_t *fs = running();
    const scope_t *s = tenant != NULL ? find_tenant(fs, tenant) : NULL;
    return s != NULL ? s : &fs->defaults;
}

px_mode_t px_flags_mode(const char *tenant, rw_fn_t fn)
{
    if ((unsigned)fn >= RW_FN__COUNT)
        return PX_MODE_OFF;
    return scope_for(tenant)->mode[fn];
}

bool px_flags_any(const char *tenant, px_mode_t mode)
{
    const scope_t *sc = scope_for(tenant);
    for (int f = 0; f < RW_FN__COUNT; f++)
        if (sc->mode[f] == mode)
            return true;
    return false;
}

uint32_t px_flags_ttl(const char *tenant, rw_fn_t fn)
{
    if ((unsigned)fn >= RW_FN__COUNT)
        return PX_TTL_DEFAULT;
    return scope_for(tenant)->ttl[fn];
}

bool px_flags_has_tenant(const char *tenant)
{
    return find_tenant(running(), tenant) != NULL;
}

void px_flags_changed(const char *tenant, rw_fn_t fn, uint64_t *at_ms, const char **how)
{
    const scope_t *s = strcmp(tenant, "*") == 0 ? &running()->defaults : scope_for(tenant);
    if ((unsigned)fn >= RW_FN__COUNT) {
        *at_ms = 0;
        *how = "";
        return;
    }
    *at_ms = s->changed_at[fn];
    *how = s->changed_how[fn];
}

/* ---------------------------------------------------------------------------------------------
 * Parsing keys (ini and SET INTERCEPT share it)
 * ------------------------------------------------------------------------------------------- */

typedef enum { KEY_ALL, KEY_FAM, KEY_FN } key_kind_t;

/* `what` lower-cased: all, a family, or a function. Returns 0 or -1. */
static int parse_what(const char *what, key_kind_t *kind, int *idx)
{
    char low[128];
    size_t n = strlen(what);
    if (n == 0 || n >= sizeof(low))
        return -1;
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)tolower((unsigned char)what[i]);
    if (strcmp(low, "all") == 0) {
        *kind = KEY_ALL;
        *idx = 0;
        return 0;
    }
    int i = rw_family_lookup(low);
    if (i >= 0) {
        *kind = KEY_FAM;
        *idx = i;
        return 0;
    }
    i = rw_fn_lookup(low);
    if (i >= 0) {
        *kind = KEY_FN;
        *idx = i;
        return 0;
    }
    return -1;
}

static int mode_lookup_ci(const char *v)
{
    char low[32];
    size_t n = strlen(v);
    if (n == 0 || n >= sizeof(low))
        return -1;
    for (size_t i = 0; i <= n; i++)
        low[i] = (char)tolower((unsigned char)v[i]);
    return px_mode_lookup(low);
}

static void trim(const char *in, char *out, size_t outlen)
{
    while (isspace((unsigned char)*in))
        in++;
    size_t n = strlen(in);
    while (n > 0 && isspace((unsigned char)in[n - 1]))
        n--;
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, in, n);
    out[n] = '\0';
}

/* Longest TTL accepted: a week. Longer is almost certainly a unit mistake. */
#define TTL_MAX 604800L

int px_flags_config_line(px_flagset_t **set, const char *section, const char *key,
                         const char *value, int line, char *err, size_t errlen)
{
    (void)line;
    if (*set == NULL) {
        *set = flagset_new();
        if (*set == NULL)
            die_nomem();
    }
    px_flagset_t *fs = *set;
    scope_t *s;
    if (strcasecmp(section, "intercept") == 0) {
        s = &fs->defaults;
    } else if (strncasecmp(section, "tenant.", 7) == 0 && section[7] != '\0') {
        const char *name = section + 7;
        s = find_tenant(fs, name);
        if (s == NULL && (s = add_tenant(fs, name)) == NULL)
            die_nomem();
    } else {
        snprintf(err, errlen, "section [%s] is not an interception section", section);
        return -1;
    }

    char k[160], v[160];
    trim(key, k, sizeof(k));
    trim(value, v, sizeof(v));
    bool is_ttl = strncasecmp(k, "ttl.", 4) == 0;
    const char *what = is_ttl ? k + 4 : k;
    key_kind_t kind;
    int idx;
    if (parse_what(what, &kind, &idx) < 0) {
        snprintf(err, errlen,
                 "unknown key \"%s\" in [%s]: expected all, a family (bu, assets, jobs, "
                 "capabilities), a function name, or ttl. followed by one of those",
                 k, section);
        return -1;
    }
    if (is_ttl) {
        char *end;
        errno = 0;
        long t = strtol(v, &end, 10);
        if (v[0] == '\0' || *end != '\0' || errno != 0 || t < 0 || t > TTL_MAX) {
            snprintf(err, errlen, "bad TTL \"%s\" for %s: expected seconds 0..%ld", v, k,
                     TTL_MAX);
            return -1;
        }
        if (kind == KEY_ALL)
            s->layer.ttl_all = t;
        else if (kind == KEY_FAM)
            s->layer.ttl_fam[idx] = t;
        else
            s->layer.ttl_fn[idx] = t;
        return 0;
    }
    int m = mode_lookup_ci(v);
    if (m < 0) {
        snprintf(err, errlen, "unknown mode \"%s\" for %s: expected off, native, cache or shadow",
                 v, k);
        return -1;
    }
    if (kind == KEY_ALL)
        s->layer.mode_all = m;
    else if (kind == KEY_FAM)
        s->layer.mode_fam[idx] = m;
    else
        s->layer.mode_fn[idx] = m;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Install, SET INTERCEPT, unsaved changes
 * ------------------------------------------------------------------------------------------- */

static void unsaved_clear(void)
{
    for (size_t i = 0; i < g_nunsaved; i++) {
        free(g_unsaved[i].section);
        free(g_unsaved[i].key);
        free(g_unsaved[i].value);
    }
    free(g_unsaved);
    g_unsaved = NULL;
    g_nunsaved = 0;
}

static void stats_sync_changes(void);

void px_flags_install(px_flagset_t *set)
{
    if (set == NULL) {
        set = flagset_new();
        if (set == NULL)
            die_nomem();
    }
    px_flagset_t *old = g_flags;
    /* Start every resolved mode from what was running, so only real changes are stamped. */
    resolve_all(set, NULL);
    uint64_t at = now_ms();
    const char *how = g_installed_once ? "reload" : "config";
    for (size_t i = 0; i <= set->ntenants; i++) {
        scope_t *s = i < set->ntenants ? set->tenants[i] : &set->defaults;
        const scope_t *prev = NULL;
        if (old != NULL)
            prev = s == &set->defaults ? &old->defaults : find_tenant(old, s->name);
        if (prev == NULL && old != NULL)
            prev = &old->defaults;   /* a new tenant section: it used the defaults before */
        for (int f = 0; f < RW_FN__COUNT; f++) {
            if (prev != NULL && prev->mode[f] == s->mode[f]) {
                s->changed_at[f] = prev->changed_at[f];
                s->changed_how[f] = prev->changed_how[f];
            } else {
                s->changed_at[f] = at;
                s->changed_how[f] = how;
            }
        }
    }
    g_flags = set;   /* the swap: statements dispatched from now on see the new set */
    g_installed_once = true;
    px_flags_set_free(old);
    unsaved_clear();
    stats_sync_changes();
}

size_t px_flags_unsaved(void) { return g_nunsaved; }

/* Remembers section/key = value for SAVE, replacing an earlier change of the same key. */
static int unsaved_add(const char *section, const char *key, const char *value)
{
    for (size_t i = 0; i < g_nunsaved; i++) {
        if (strcmp(g_unsaved[i].section, section) == 0 && strcmp(g_unsaved[i].key, key) == 0) {
            char *v = strdup(value);
            if (v == NULL)
                return -1;
            free(g_unsaved[i].value);
            g_unsaved[i].value = v;
            return 0;
        }
    }
    unsaved_t *n = realloc(g_unsaved, (g_nunsaved + 1) * sizeof(*n));
    if (n == NULL)
        return -1;
    g_unsaved = n;
    unsaved_t *u = &g_unsaved[g_nunsaved];
    u->section = strdup(section);
    u->key = strdup(key);
    u->value = strdup(value);
    if (u->section == NULL || u->key == NULL || u->value == NULL) {
        free(u->section);
        free(u->key);
        free(u->value);
        return -1;
    }
    g_nunsaved++;
    return 0;
}

int px_flags_set(const char *tenant, const char *what, px_mode_t mode, const char **err)
{
    key_kind_t kind;
    int idx;
    if ((unsigned)mode >= PX_MODE__COUNT) {
        *err = "unknown mode: expected off, native, cache or shadow";
        return -1;
    }
    if (tenant == NULL || tenant[0] == '\0') {
        *err = "empty tenant name";
        return -1;
    }
    /* SAVE must be able to write the name as a section header [tenant.NAME] that reads back
       as the same name. */
    if (strpbrk(tenant, "[]\r\n") != NULL || isspace((unsigned char)tenant[0]) ||
        isspace((unsigned char)tenant[strlen(tenant) - 1]) || strlen(tenant) > 200) {
        *err = "tenant name cannot be written as an ini section [tenant.NAME]";
        return -1;
    }
    if (parse_what(what, &kind, &idx) < 0) {
        *err = "unknown function or family: expected ALL, bu, assets, jobs, capabilities or a "
               "function name";
        return -1;
    }
    px_flagset_t *fs = running();
    scope_t *s = find_scope(fs, tenant);
    if (s == NULL) {
        if ((s = add_tenant(fs, tenant)) == NULL) {
            *err = "out of memory";
            return -1;
        }
        /* Until now the tenant ran on the defaults: only real changes get a new stamp. */
        memcpy(s->mode, fs->defaults.mode, sizeof(s->mode));
        memcpy(s->ttl, fs->defaults.ttl, sizeof(s->ttl));
        memcpy(s->changed_at, fs->defaults.changed_at, sizeof(s->changed_at));
        memcpy(s->changed_how, fs->defaults.changed_how, sizeof(s->changed_how));
    }
    char section[256];
    if (strcmp(tenant, "*") == 0)
        snprintf(section, sizeof(section), "intercept");
    else
        snprintf(section, sizeof(section), "tenant.%s", tenant);
    const char *mname = px_mode_name(mode);
    int rc = 0;
    /* "SET ... jobs native" means every jobs function of the tenant becomes native, so keys of
       narrower scope that the tenant already has are set too (rather than deleted, which SAVE
       would have to express as removing lines from the operator's file). */
    if (kind == KEY_ALL) {
        s->layer.mode_all = (int)mode;
        rc |= unsaved_add(section, "all", mname);
        for (int i = 0; i < RW_FAM__COUNT; i++)
            if (s->layer.mode_fam[i] != UNSET) {
                s->layer.mode_fam[i] = (int)mode;
                rc |= unsaved_add(section, rw_family_name((rw_family_t)i), mname);
            }
        for (int i = 0; i < RW_FN__COUNT; i++)
            if (s->layer.mode_fn[i] != UNSET) {
                s->layer.mode_fn[i] = (int)mode;
                rc |= unsaved_add(section, rw_fn_name((rw_fn_t)i), mname);
            }
    } else if (kind == KEY_FAM) {
        s->layer.mode_fam[idx] = (int)mode;
        rc |= unsaved_add(section, rw_family_name((rw_family_t)idx), mname);
        for (int i = 0; i < RW_FN__COUNT; i++)
            if (s->layer.mode_fn[i] != UNSET && (int)rw_fn_family((rw_fn_t)i) == idx) {
                s->layer.mode_fn[i] = (int)mode;
                rc |= unsaved_add(section, rw_fn_name((rw_fn_t)i), mname);
            }
    } else {
        s->layer.mode_fn[idx] = (int)mode;
        rc |= unsaved_add(section, rw_fn_name((rw_fn_t)idx), mname);
    }
    resolve_all(fs, "SET INTERCEPT");
    stats_sync_changes();
    if (rc != 0) {
        *err = "applied, but out of memory remembering the change for SAVE";
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * SAVE
 * ------------------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf_t;

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc < b->len + n + 1)
            nc *= 2;
        char *np = realloc(b->p, nc);
        if (np == NULL) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s) { sb_add(b, s, strlen(s)); }

/* Section name of a header line "[name]" (trimmed), or false. */
static bool line_section(const char *line, size_t len, char *out, size_t outlen)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char)line[i]))
        i++;
    if (i >= len || line[i] != '[')
        return false;
    const char *e = memchr(line + i, ']', len - i);
    if (e == NULL)
        return false;
    size_t n = (size_t)(e - (line + i + 1));
    char tmp[512];
    if (n >= sizeof(tmp))
        n = sizeof(tmp) - 1;
    memcpy(tmp, line + i + 1, n);
    tmp[n] = '\0';
    trim(tmp, out, outlen);
    return true;
}

/* Key of a "key = value" line (not a comment), lower-cased and trimmed, or false. */
static bool line_key(const char *line, size_t len, char *out, size_t outlen)
{
    size_t i = 0;
    while (i < len && isspace((unsigned char)line[i]))
        i++;
    if (i >= len || line[i] == ';' || line[i] == '#' || line[i] == '[')
        return false;
    const char *eq = memchr(line + i, '=', len - i);
    if (eq == NULL)
        return false;
    size_t n = (size_t)(eq - (line + i));
    char tmp[512];
    if (n >= sizeof(tmp))
        n = sizeof(tmp) - 1;
    memcpy(tmp, line + i, n);
    tmp[n] = '\0';
    trim(tmp, out, outlen);
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return true;
}

static bool section_matches(const char *written, const char *wanted)
{
    /* Section names compare like the loader does: "intercept" and the "tenant." prefix
       case-insensitively, the tenant name exactly. */
    if (strcasecmp(wanted, "intercept") == 0)
        return strcasecmp(written, "intercept") == 0;
    return strncasecmp(written, "tenant.", 7) == 0 && strcmp(written + 7, wanted + 7) == 0;
}

/* Appends the changes of `section` not yet written (done[] marks written ones). */
static void emit_pending(sbuf_t *b, const char *section, bool *done)
{
    for (size_t i = 0; i < g_nunsaved; i++) {
        if (done[i] || strcmp(g_unsaved[i].section, section) != 0)
            continue;
        sb_str(b, g_unsaved[i].key);
        sb_str(b, " = ");
        sb_str(b, g_unsaved[i].value);
        sb_str(b, "\n");
        done[i] = true;
    }
}

int px_flags_save(const char *path, char *err, size_t errlen)
{
    if (g_nunsaved == 0)
        return 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    bool *done = calloc(g_nunsaved, sizeof(bool));
    sbuf_t b = {0};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    char cur[512] = "";
    bool in_section = false;
    /* Where to insert keys missing from a section: after its last key line, so trailing
       comments and blank lines that introduce the next section stay where they are. We
       buffer lines after the last key of the current section in `tail`. */
    sbuf_t tail = {0};
    if (done == NULL) {
        fclose(f);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    while ((n = getline(&line, &cap, f)) > 0) {
        char sec[512], key[512];
        if (line_section(line, (size_t)n, sec, sizeof(sec))) {
            if (in_section)
                emit_pending(&b, cur, done);
            sb_add(&b, tail.p ? tail.p : "", tail.len);
            tail.len = 0;
            snprintf(cur, sizeof(cur), "%s", sec);
            in_section = false;
            /* Use the canonical section string of the change list for matching. */
            for (size_t i = 0; i < g_nunsaved; i++)
                if (section_matches(sec, g_unsaved[i].section)) {
                    snprintf(cur, sizeof(cur), "%s", g_unsaved[i].section);
                    in_section = true;
                    break;
                }
            sb_add(&b, line, (size_t)n);
            continue;
        }
        if (in_section && line_key(line, (size_t)n, key, sizeof(key))) {
            sb_add(&b, tail.p ? tail.p : "", tail.len);
            tail.len = 0;
            bool replaced = false;
            for (size_t i = 0; i < g_nunsaved; i++) {
                if (strcmp(g_unsaved[i].section, cur) != 0 || strcmp(g_unsaved[i].key, key) != 0)
                    continue;
                /* Keep the key as written (and its indentation); replace only the value. */
                const char *eq = memchr(line, '=', (size_t)n);
                sb_add(&b, line, (size_t)(eq - line + 1));
                sb_str(&b, " ");
                sb_str(&b, g_unsaved[i].value);
                sb_str(&b, "\n");
                done[i] = true;
                replaced = true;
                break;
            }
            if (!replaced)
                sb_add(&b, line, (size_t)n);
            continue;
        }
        if (in_section)
            sb_add(&tail, line, (size_t)n);
        else
            sb_add(&b, line, (size_t)n);
    }
    free(line);
    bool read_err = ferror(f);
    fclose(f);
    if (in_section) {
        if (b.len > 0 && b.p[b.len - 1] != '\n')
            sb_str(&b, "\n");
        emit_pending(&b, cur, done);
    }
    sb_add(&b, tail.p ? tail.p : "", tail.len);
    free(tail.p);
    /* Sections the file does not have yet go at the end, in the order they were changed. */
    for (size_t i = 0; i < g_nunsaved; i++) {
        if (done[i])
            continue;
        if (b.len > 0 && b.p[b.len - 1] != '\n')
            sb_str(&b, "\n");
        sb_str(&b, "\n[");
        sb_str(&b, g_unsaved[i].section);
        sb_str(&b, "]\n");
        emit_pending(&b, g_unsaved[i].section, done);
    }
    free(done);
    if (read_err || tail.failed || b.failed) {
        free(b.p);
        snprintf(err, errlen, "%s while rewriting %s", read_err ? "read error" : "out of memory",
                 path);
        return -1;
    }

    /* Temporary file in the same directory so rename() is atomic on the same filesystem. */
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.saveXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        free(b.p);
        snprintf(err, errlen, "cannot create temporary file next to %s: %s", path,
                 strerror(errno));
        return -1;
    }
    /* mkstemp makes the file 0600; the ini keeps its own permissions and owner. */
    struct stat st;
    if (stat(path, &st) == 0) {
        (void)fchmod(fd, st.st_mode & 07777);
        if (fchown(fd, st.st_uid, st.st_gid) != 0) {
            /* Not root: the file simply belongs to pgshim's user, as any rewrite would. */
        }
    }
    size_t off = 0;
    int rc = 0;
    while (off < b.len) {
        ssize_t w = write(fd, b.p + off, b.len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -1;
            break;
        }
        off += (size_t)w;
    }
    free(b.p);
    if (rc == 0 && fsync(fd) != 0)
        rc = -1;
    int saved_errno = errno;
    if (close(fd) != 0 && rc == 0) {
        rc = -1;
        saved_errno = errno;
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -1;
        saved_errno = errno;
    }
    if (rc != 0) {
        unlink(tmp);
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(saved_errno));
        return -1;
    }
    /* Make the rename durable too. */
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    unsaved_clear();
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Stats and candidates
 * ------------------------------------------------------------------------------------------- */

typedef struct stat_tenant {
    char *name;
    px_icpt_stats_t st[RW_FN__COUNT];
    px_candidate_t cand[RW_FN__COUNT];
    bool has_stats[RW_FN__COUNT], has_cand[RW_FN__COUNT];
    struct stat_tenant *next;
} stat_tenant_t;

static stat_tenant_t *g_stats, **g_stats_tail = &g_stats;
static stat_tenant_t *g_stats_last;   /* one-entry cache: most calls come from one tenant */
static px_icpt_stats_t g_scratch;

static stat_tenant_t *stat_tenant_find(const char *tenant)
{
    if (g_stats_last != NULL && strcmp(g_stats_last->name, tenant) == 0)
        return g_stats_last;
    for (stat_tenant_t *t = g_stats; t != NULL; t = t->next)
        if (strcmp(t->name, tenant) == 0)
            return g_stats_last = t;
    return NULL;
}

static void stat_copy_change(stat_tenant_t *t, int f)
{
    uint64_t at;
    const char *how;
    px_flags_changed(t->name, (rw_fn_t)f, &at, &how);
    t->st[f].mode_changed_at = at;
    snprintf(t->st[f].mode_changed_how, sizeof(t->st[f].mode_changed_how), "%s", how);
}

static stat_tenant_t *stat_tenant_get(const char *tenant)
{
    if (tenant == NULL)
        tenant = "";
    stat_tenant_t *t = stat_tenant_find(tenant);
    if (t != NULL)
        return t;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->name = strdup(tenant);
    if (t->name == NULL) {
        free(t);
        return NULL;
    }
    for (int f = 0; f < RW_FN__COUNT; f++)
        stat_copy_change(t, f);
    *g_stats_tail = t;
    g_stats_tail = &t->next;
    return g_stats_last = t;
}

static void stats_sync_changes(void)
{
    for (stat_tenant_t *t = g_stats; t != NULL; t = t->next)
        for (int f = 0; f < RW_FN__COUNT; f++)
            stat_copy_change(t, f);
}

px_icpt_stats_t *px_stats_get(const char *tenant, rw_fn_t fn)
{
    stat_tenant_t *t = (unsigned)fn < RW_FN__COUNT ? stat_tenant_get(tenant) : NULL;
    if (t == NULL) {
        memset(&g_scratch, 0, sizeof(g_scratch));
        return &g_scratch;
    }
    t->has_stats[fn] = true;
    return &t->st[fn];
}

void px_stats_latency(px_icpt_stats_t *st, uint64_t usec)
{
    /* Bucket 0 is [0,1), bucket b >= 1 is [2^(b-1), 2^b). */
    int b = 0;
    while (usec > 0 && b < PX_LAT_BUCKETS - 1) {
        usec >>= 1;
        b++;
    }
    st->lat_hist[b]++;
}

uint64_t px_stats_percentile(const px_icpt_stats_t *st, double pct)
{
    uint64_t total = 0;
    for (int b = 0; b < PX_LAT_BUCKETS; b++)
        total += st->lat_hist[b];
    if (total == 0)
        return 0;
    if (pct < 0)
        pct = 0;
    if (pct > 100)
        pct = 100;
    /* Rank of the percentile, at least 1 so p0 is the first sample's bucket. */
    uint64_t rank = (uint64_t)((pct / 100.0) * (double)total + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int b = 0; b < PX_LAT_BUCKETS; b++) {
        seen += st->lat_hist[b];
        if (seen >= rank)
            return (uint64_t)1 << b;   /* upper bound of bucket b */
    }
    return (uint64_t)1 << (PX_LAT_BUCKETS - 1);
}

void px_stats_candidate(const char *tenant, rw_fn_t fn, bool eligible, rw_reason_t reason)
{
    if ((unsigned)fn >= RW_FN__COUNT)
        return;
    stat_tenant_t *t = stat_tenant_get(tenant);
    if (t == NULL)
        return;
    t->has_cand[fn] = true;
    t->cand[fn].seen++;
    if (eligible)
        t->cand[fn].eligible++;
    else
        t->cand[fn].last_reason = reason;
}

const px_icpt_stats_t *px_stats_find(const char *tenant, rw_fn_t fn)
{
    if ((unsigned)fn >= RW_FN__COUNT)
        return NULL;
    stat_tenant_t *t = stat_tenant_find(tenant);
    return t != NULL && t->has_stats[fn] ? &t->st[fn] : NULL;
}

const px_candidate_t *px_stats_find_candidate(const char *tenant, rw_fn_t fn)
{
    if ((unsigned)fn >= RW_FN__COUNT)
        return NULL;
    stat_tenant_t *t = stat_tenant_find(tenant);
    return t != NULL && t->has_cand[fn] ? &t->cand[fn] : NULL;
}

void px_flags_foreach_tenant(px_tenant_cb cb, void *arg)
{
    px_flagset_t *fs = running();
    for (size_t i = 0; i < fs->ntenants; i++)
        cb(fs->tenants[i]->name, arg);
    for (stat_tenant_t *t = g_stats; t != NULL; t = t->next)
        if (find_tenant(fs, t->name) == NULL)
            cb(t->name, arg);
}
