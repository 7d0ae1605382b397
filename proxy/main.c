/*
 * pgshim entry point: command line, configuration, the libuv loop, signals.
 *
 *   pgshim [-v]... [-c] FILE       run with FILE (PgBouncer also takes FILE positionally)
 *   pgshim --check-sample FILE     exit 0 iff FILE documents every option of the table
 *   pgshim --help | --version
 *
 * Signals: SIGINT exits at once; SIGTERM stops accepting and exits when the clients are gone
 * (bounded by shutdown_wait_timeout); SIGHUP reloads the ini and the auth file (a bad file keeps
 * the old configuration and logs FILE:LINE).
 */
#include "px_cache.h"
#include "px_admin.h"
#include "px_listen.h"
#include "px_log.h"
#include "px_proxy.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PGSHIM_VERSION
#define PGSHIM_VERSION "0.1.0"
#endif

uv_loop_t *px_loop;
bool px_shutting_down;
px_list_t g_login_clients, g_closing_clients, g_closing_servers, g_pools;
int px_nclients;

static uint64_t g_next_id;
static uv_signal_t g_sigint, g_sigterm, g_sighup;
static uv_timer_t g_shutdown_timer;
static uint64_t g_shutdown_deadline;
static int g_extra_verbose;

uint64_t px_next_id(void) { return ++g_next_id; }

static void usage(FILE *out)
{
    fprintf(out,
            "pgshim: PostgreSQL wire-protocol proxy and connection pooler\n\n"
            "Usage:\n"
            "  pgshim [OPTION]... [-c] CONFIG_FILE\n\n"
            "Options:\n"
            "  -c, --config FILE     configuration file (pgshim.ini)\n"
            "  -v, --verbose         more logging (repeat for more)\n"
            "      --check-sample F  check that F documents every configuration option\n"
            "      --check-config F  load F, report the first error as FILE:LINE, and exit\n"
            "      --list-options    print every option with its default\n"
            "  -V, --version         print version and exit\n"
            "  -h, --help            print this help and exit\n");
}

static void write_pidfile(void)
{
    const char *path = px_cfg->pidfile;
    if (path[0] == '\0')
        return;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        px_log_error("cannot write pidfile %s: %s", path, strerror(errno));
        return;
    }
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
}

static void remove_pidfile(void)
{
    if (px_cfg != NULL && px_cfg->pidfile[0] != '\0')
        unlink(px_cfg->pidfile);
}

static void exit_now(int code)
{
    px_io_flush_all();
    px_listen_stop();
    remove_pidfile();
    px_log_info("pgshim exiting");
    exit(code);
}

static void on_sigint(uv_signal_t *h, int sig)
{
    px_log_info("got SIGINT, shutting down");
    exit_now(0);
}

/* Graceful shutdown: waits until every client is gone or the deadline passes. */
static void shutdown_tick(uv_timer_t *t)
{
    px_janitor_close_idle_clients();
    if (px_nclients == 0 || uv_now(px_loop) >= g_shutdown_deadline) {
        if (px_nclients > 0)
            px_log_info("shutdown_wait_timeout reached with %d clients", px_nclients);
        exit_now(0);
    }
}

static void on_sigterm(uv_signal_t *h, int sig)
{
    if (px_shutting_down)
        return;
    px_log_info("got SIGTERM, stopping new connections; waiting for %d clients", px_nclients);
    px_shutting_down = true;
    px_listen_stop();
    g_shutdown_deadline = uv_now(px_loop) + (uint64_t)(px_cfg->shutdown_wait_timeout * 1000.0);
    uv_timer_init(px_loop, &g_shutdown_timer);
    uv_timer_start(&g_shutdown_timer, shutdown_tick, 0, 100);
}

static void on_sighup(uv_signal_t *h, int sig)
{
    char err[1024];
    px_log_info("got SIGHUP");
    (void)px_admin_reload(err, sizeof(err));  /* the same reload as the console's RELOAD */
}

static void setup_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    uv_signal_init(px_loop, &g_sigint);
    uv_signal_start(&g_sigint, on_sigint, SIGINT);
    uv_signal_init(px_loop, &g_sigterm);
    uv_signal_start(&g_sigterm, on_sigterm, SIGTERM);
    uv_signal_init(px_loop, &g_sighup);
    uv_signal_start(&g_sighup, on_sighup, SIGHUP);
}

static void init_globals(void)
{
    px_list_init(&g_login_clients);
    px_list_init(&g_closing_clients);
    px_list_init(&g_closing_servers);
    px_list_init(&g_pools);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("pgshim %s\n", PGSHIM_VERSION);
            return 0;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            g_extra_verbose++;
        } else if (strcmp(a, "--list-options") == 0) {
            px_config_print_table(stdout);
            return 0;
        } else if (strcmp(a, "--check-sample") == 0 && i + 1 < argc) {
            int missing = px_config_check_sample(argv[++i], stderr);
            if (missing == 0)
                printf("%s documents every option\n", argv[i]);
            return missing == 0 ? 0 : 1;
        } else if (strcmp(a, "--check-config") == 0 && i + 1 < argc) {
            char e[1024];
            px_config_t *c = px_config_load(argv[++i], e, sizeof(e));
            if (c == NULL) {
                fprintf(stderr, "%s\n", e);
                return 1;
            }
            px_config_free(c);
            printf("%s: configuration is valid\n", argv[i]);
            return 0;
        } else if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
            config_path = argv[++i];
        } else if (a[0] != '-' && config_path == NULL) {
            config_path = a;
        } else {
            fprintf(stderr, "pgshim: unknown argument \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (config_path == NULL) {
        usage(stderr);
        return 2;
    }
    char err[1024];
    px_config_t *cfg = px_config_load(config_path, err, sizeof(err));
    if (cfg == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    cfg->verbose += g_extra_verbose;
    px_admin_extra_verbose = g_extra_verbose;
    px_config_reload_apply(cfg);
    if (px_cfg->auth_file[0] != '\0' && px_userlist_load(px_cfg->auth_file) < 0) {
        fprintf(stderr, "%s: cannot load auth_file %s\n", config_path, px_cfg->auth_file);
        return 1;
    }
    px_io_high_water = (size_t)px_cfg->sbuf_high_water;
    init_globals();
    px_loop = uv_default_loop();
    px_io_global_init(px_loop);
    px_cache_start();  /* connect to Redis now, so the first cache-mode calls find it ready */
    setup_signals();
    if (px_listen_start() < 0) {
        px_listen_stop();
        return 1;
    }
    px_janitor_start();
    write_pidfile();
    px_log_info("pgshim %s started (pool_mode=%s, auth_type=%s)", PGSHIM_VERSION,
                px_pool_mode_name(px_cfg->pool_mode), px_auth_type_name(px_cfg->auth_type));
    uv_run(px_loop, UV_RUN_DEFAULT);
    exit_now(0);
    return 0;
}
