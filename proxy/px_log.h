/*
 * px_log: the proxy's one logger. Lines go to stderr, or to the logfile when one is configured,
 * each prefixed with a UTC timestamp, the process id and the level. Secrets never reach this
 * module: callers log user and database names, addresses and reasons, never passwords, keys or
 * auth payloads.
 */
#ifndef PGSHIM_PROXY_PX_LOG_H
#define PGSHIM_PROXY_PX_LOG_H

typedef enum px_log_level {
    PX_LOG_ERROR = 0,
    PX_LOG_WARNING = 1,
    PX_LOG_INFO = 2,   /* "LOG" in output, like PgBouncer */
    PX_LOG_DEBUG = 3,  /* verbose >= 1 */
    PX_LOG_NOISE = 4,  /* verbose >= 2 */
} px_log_level_t;

/* Sets the maximum level printed (PX_LOG_INFO + verbose). */
void px_log_set_verbosity(int verbose);
/* Redirects output to path (appending); NULL or "" means stderr. Returns 0 or -errno. */
int px_log_open(const char *path);
void px_log_close(void);
void px_log(px_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define px_log_error(...) px_log(PX_LOG_ERROR, __VA_ARGS__)
#define px_log_warn(...) px_log(PX_LOG_WARNING, __VA_ARGS__)
#define px_log_info(...) px_log(PX_LOG_INFO, __VA_ARGS__)
#define px_log_debug(...) px_log(PX_LOG_DEBUG, __VA_ARGS__)
#define px_log_noise(...) px_log(PX_LOG_NOISE, __VA_ARGS__)

#endif
