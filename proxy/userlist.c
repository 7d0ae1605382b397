/*
 * The auth file in PgBouncer's userlist.txt format: one `"user" "secret"` per line, a doubled
 * quote inside a quoted token stands for one quote, other lines are ignored. Secrets may be
 * plaintext, "md5" + 32 hex digits, or "SCRAM-SHA-256$...".
 *
 * Invariants: the list is replaced as a whole on reload, so px_user_t pointers held by clients
 * in the middle of authentication stay valid until the next reload only: auth copies what it
 * needs into the client before yielding to the loop... except the pointer itself, which is why
 * a reload keeps the old list alive until every client that started authenticating under it is
 * done (old lists are parked, never freed during run time; reloads are rare and lists small).
 * Secrets are never logged.
 */
#include "px_proxy.h"
#include "px_log.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct userlist {
    px_user_t *users;
    size_t n;
    struct userlist *older;   /* parked previous lists (see file comment) */
} userlist_t;

static userlist_t *g_list;

/* Reads one double-quoted token at *p into out; returns false if none. */
static bool read_token(const char **p, char *out, size_t outlen)
{
    const char *s = *p;
    while (isspace((unsigned char)*s))
        s++;
    if (*s != '"')
        return false;
    s++;
    size_t n = 0;
    for (;;) {
        if (*s == '\0' || *s == '\n')
            return false;
        if (*s == '"') {
            if (s[1] != '"')
                break;
            s++;
        }
        if (n + 1 >= outlen)
            return false;
        out[n++] = *s++;
    }
    out[n] = '\0';
    *p = s + 1;
    return true;
}

static bool is_md5_secret(const char *s)
{
    if (strncmp(s, "md5", 3) != 0 || strlen(s) != 35)
        return false;
    for (int i = 3; i < 35; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static bool add_user(userlist_t *l, size_t *cap, const char *name, const char *secret, int line,
                     const char *path)
{
    if (l->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        px_user_t *nu = realloc(l->users, nc * sizeof(*nu));
        if (nu == NULL)
            return false;
        l->users = nu;
        *cap = nc;
    }
    px_user_t *u = &l->users[l->n];
    memset(u, 0, sizeof(*u));
    u->name = strdup(name);
    u->secret = strdup(secret);
    if (u->name == NULL || u->secret == NULL)
        return false;
    if (strncmp(secret, "SCRAM-SHA-256$", 14) == 0) {
        u->kind = PX_SECRET_SCRAM;
        if (pgw_scram_parse_secret(secret, &u->scram) != 0) {
            px_log_warn("%s:%d: invalid SCRAM secret for user \"%s\"; ignoring the line", path,
                        line, name);
            free(u->name);
            free(u->secret);
            return true;
        }
        u->scram_ready = true;
    } else if (is_md5_secret(secret)) {
        u->kind = PX_SECRET_MD5;
    } else {
        u->kind = PX_SECRET_PLAIN;
    }
    l->n++;
    return true;
}

int px_userlist_load(const char *path)
{
    if (path == NULL || path[0] == '\0')
        return 0;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        px_log_error("cannot open auth_file %s: %s", path, strerror(errno));
        return -1;
    }
    userlist_t *l = calloc(1, sizeof(*l));
    size_t cap = 0;
    char line[8192], name[1024], secret[4096];
    int lineno = 0;
    bool ok = l != NULL;
    while (ok && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        const char *p = line;
        if (!read_token(&p, name, sizeof(name)))
            continue;
        if (!read_token(&p, secret, sizeof(secret))) {
            px_log_warn("%s:%d: no password for user \"%s\"; ignoring the line", path, lineno, name);
            continue;
        }
        ok = add_user(l, &cap, name, secret, lineno, path);
    }
    fclose(f);
    if (!ok) {
        px_log_error("out of memory loading auth_file %s", path);
        return -1;
    }
    l->older = g_list;
    g_list = l;
    px_log_debug("auth_file %s: %zu users", path, l->n);
    return 0;
}

px_user_t *px_userlist_find(const char *name)
{
    if (g_list == NULL)
        return NULL;
    for (size_t i = 0; i < g_list->n; i++)
        if (strcmp(g_list->users[i].name, name) == 0)
            return &g_list->users[i];
    return NULL;
}

void px_userlist_free(void)
{
    while (g_list != NULL) {
        userlist_t *older = g_list->older;
        for (size_t i = 0; i < g_list->n; i++) {
            /* Wipe secrets before giving the memory back. */
            OPENSSL_cleanse(g_list->users[i].secret, strlen(g_list->users[i].secret));
            if (g_list->users[i].proven_password != NULL) {
                OPENSSL_cleanse(g_list->users[i].proven_password,
                                strlen(g_list->users[i].proven_password));
                free(g_list->users[i].proven_password);
            }
            free(g_list->users[i].name);
            free(g_list->users[i].secret);
        }
        OPENSSL_cleanse(g_list->users, g_list->n * sizeof(px_user_t));
        free(g_list->users);
        free(g_list);
        g_list = older;
    }
}
