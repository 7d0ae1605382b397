/*
 * px_admin: the flag loader behind [intercept]/[tenant.NAME] (flags.c) and the admin console,
 * the virtual database "pgshim" (admin.c).
 *
 * Flags are loaded into a px_flagset_t while the ini is parsed (config.c hands every key of
 * those sections to px_flags_config_line) and become the running set only when the whole file
 * loaded: px_flags_install swaps one pointer, so a statement sees the old set or the new one.
 * Run-time changes (SET INTERCEPT) are remembered as (section, key, value) until SAVE writes
 * them into the ini, or a reload discards them.
 *
 * The admin console speaks the simple-query protocol only: every Query gets its reply messages
 * and ReadyForQuery. Users in admin_users may run everything, users in stats_users only SHOW.
 */
#ifndef PGSHIM_PROXY_PX_ADMIN_H
#define PGSHIM_PROXY_PX_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "px_intercept.h"

/* ------------------------------------------------------------ flag loading */

typedef struct px_flagset px_flagset_t;

/*
 * One key of section [intercept] or [tenant.NAME] (section as written, without brackets).
 * Keys: `all`, a family name, a function name (mode), or `ttl.` + one of those (seconds).
 * *set is created on the first call. Returns 0, or -1 with a message (without FILE:LINE; the
 * caller prefixes it) in err: unknown key, function, family, mode, or a bad TTL. Allocation
 * failure at load is fatal (start-up and reload may abort on out-of-memory).
 */
int px_flags_config_line(px_flagset_t **set, const char *section, const char *key,
                         const char *value, int line, char *err, size_t errlen);
/* Frees a set that was never installed; NULL is fine. */
void px_flags_set_free(px_flagset_t *set);
/*
 * Makes `set` the running flags and takes ownership of it (NULL = an empty file: every
 * function off, default TTLs). The first install is recorded as "config", later ones as
 * "reload" for each (tenant, function) whose mode changed. Unsaved SET INTERCEPT changes are
 * discarded: the file is the truth after a reload.
 */
void px_flags_install(px_flagset_t *set);

/* Number of run-time changes not yet written by SAVE. */
size_t px_flags_unsaved(void);
/*
 * SAVE: writes the run-time changes into the ini at `path`, changing only the affected keys
 * (adding the key, or the section at the end of the file, when missing) and keeping comments
 * and order. Atomic: a temporary file in the same directory, fsync, rename. Returns 0 (and
 * forgets the changes) or -1 with a message in err.
 */
int px_flags_save(const char *path, char *err, size_t errlen);

/* ----------------------------------------------------------- admin console */

struct px_client;
struct px_list;

/* Database name that selects the admin console. */
#define PX_ADMIN_DBNAME "pgshim"

/* True when a client asking for `dbname` is an admin console client (it gets no pool). */
bool px_admin_is_console(const char *dbname);
/* List of clients in state PX_CL_ADMIN (initialised on first use). */
struct px_list *px_admin_client_list(void);

/* Whether `user` may use the console (admin_users or stats_users), and whether it may only
   SHOW. Read from the running config, so a reload changes it for connected clients too. */
bool px_admin_allowed(const char *user, bool *read_only);

/* After authentication of a console client: refuses with 28000 (not in admin_users or
   stats_users), or sends the welcome and moves the client to PX_CL_ADMIN. */
void px_admin_login(struct px_client *c);

/* on_data of a client in PX_CL_ADMIN: handles every complete message in data[0..len), queues
   the replies, and returns the bytes consumed, or -1 when the client was closed meanwhile. */
ssize_t px_admin_data(struct px_client *c, const uint8_t *data, size_t len);

/* Graceful shutdown: closes every console client with 57P01 (they are idle between commands,
   so nothing is cut off mid-reply). */
void px_admin_close_all(void);

/* PAUSE: true while `dbname` is paused (its pools hand out no server connections). */
bool px_admin_db_paused(const char *dbname);

/* -v count from the command line, added to `verbose` of every reloaded config (main.c). */
extern int px_admin_extra_verbose;

/* RELOAD and SIGHUP: re-reads the ini and the auth file; a bad file keeps everything as it was
   and logs FILE:LINE. Returns 0, or -1 with the message in err. */
int px_admin_reload(char *err, size_t errlen);

#endif
