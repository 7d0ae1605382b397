/*
 * px_dbstats: the pooler's traffic counters per database, for the admin console's SHOW STATS,
 * SHOW STATS_TOTALS and SHOW STATS_AVERAGES (PgBouncer's columns and units).
 *
 * What is counted, and where:
 *  - query: one per ReadyForQuery a server sends to a client (a simple Query, or an extended
 *    batch up to its Sync); its time runs from the moment the server had nothing in flight and
 *    got the client's first message, to that ReadyForQuery.
 *  - transaction: one per ReadyForQuery with status idle ('I'); its time runs from the first
 *    message after the previous idle ReadyForQuery.
 *  - wait: the time a client spent waiting for a server (PX_CL_WAITING).
 *  - received / sent: bytes read from and written to clients of the database (the protocol
 *    messages pgshim forwards or generates itself).
 * Times are microseconds. Averages are recomputed every stats_period seconds from the
 * difference of the totals (counts and bytes per second; time per query or transaction; wait
 * time per second), as PgBouncer does.
 *
 * Entries are created on first use per database name and live for the process lifetime, so a
 * pointer to one may be kept (pools do); names are copied.
 */
#ifndef PGSHIM_PROXY_PX_DBSTATS_H
#define PGSHIM_PROXY_PX_DBSTATS_H

#include <stdint.h>

typedef struct px_dbstats_vals {
    uint64_t xact_count, query_count;
    uint64_t received, sent;
    uint64_t xact_time, query_time, wait_time;  /* microseconds */
} px_dbstats_vals_t;

typedef struct px_dbstats {
    char *dbname;
    px_dbstats_vals_t total;
    px_dbstats_vals_t at_last_period;   /* totals when the averages were last computed */
    px_dbstats_vals_t avg;              /* over the last complete stats_period */
    struct px_dbstats *next;
} px_dbstats_t;

/* Counters of dbname, created on first use. Never NULL: on allocation failure a shared scratch
   entry is returned (its counts are not shown). */
px_dbstats_t *px_dbstats_get(const char *dbname);
/* All entries in creation order (for the console). */
px_dbstats_t *px_dbstats_first(void);

/* Microseconds on a monotonic clock (uv_hrtime based). */
uint64_t px_dbstats_now_us(void);

/* Called once a second (janitor): recomputes the averages when stats_period seconds passed. */
void px_dbstats_tick(void);

/* Frees everything (process exit). */
void px_dbstats_free_all(void);

#endif
