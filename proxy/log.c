/*
 * Logger implementation. Writes whole lines with one fwrite so concurrent writers (there is one
 * thread today) never interleave inside a line; flushes after every line because operators tail
 * the file and a crash must not lose the lines that explain it.
 */
#include "px_log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int g_max_level = PX_LOG_INFO;
static FILE *g_out;

void px_log_set_verbosity(int verbose)
{
    g_max_level = PX_LOG_INFO + (verbose < 0 ? 0 : verbose);
}

int px_log_open(const char *path)
{
    if (path == NULL || path[0] == '\0') {
        px_log_close();
        return 0;
    }
    FILE *f = fopen(path, "a");
    if (f == NULL)
        return -errno;
    px_log_close();
    g_out = f;
    return 0;
}

void px_log_close(void)
{
    if (g_out != NULL)
        fclose(g_out);
    g_out = NULL;
}

static const char *level_name(px_log_level_t level)
{
    switch (level) {
    case PX_LOG_ERROR: return "ERROR";
    case PX_LOG_WARNING: return "WARNING";
    case PX_LOG_INFO: return "LOG";
    case PX_LOG_DEBUG: return "DEBUG";
    default: return "NOISE";
    }
}

void px_log(px_log_level_t level, const char *fmt, ...)
{
    if ((int)level > g_max_level)
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d.%03d UTC [%d] %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (int)(tv.tv_usec / 1000), (int)getpid(), level_name(level));
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    FILE *out = g_out != NULL ? g_out : stderr;
    fwrite(line, 1, len, out);
    fflush(out);
}
