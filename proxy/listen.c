/*
 * Listeners. libuv sets SO_REUSEADDR on TCP binds; IPv6 sockets are bound IPv6-only so "*" can
 * bind 0.0.0.0 and :: on the same port. A stale Unix socket file left by a crashed pgshim is
 * removed before binding, like PostgreSQL and PgBouncer do.
 */
#include "px_listen.h"
#include "px_log.h"
#include "px_proxy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_LISTENERS 16

typedef struct listener {
    px_stream_handle_t h;
    bool is_tcp;
    bool open;
} listener_t;

static listener_t g_listeners[MAX_LISTENERS];
static int g_nlisteners;
static char g_socket_path[512];

static void on_connection(uv_stream_t *server, int status)
{
    listener_t *l = server->data;
    if (status < 0) {
        px_log_warn("accept failed: %s", uv_strerror(status));
        return;
    }
    px_client_accept(server, l->is_tcp);
}

static int listen_tcp(const char *host, int port)
{
    struct sockaddr_storage ss;
    bool v6 = strchr(host, ':') != NULL;
    int rc = v6 ? uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss)
                : uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
    if (rc < 0) {
        fprintf(stderr, "pgshim: invalid listen_addr \"%s\"\n", host);
        return -1;
    }
    if (g_nlisteners == MAX_LISTENERS) {
        fprintf(stderr, "pgshim: too many listen addresses\n");
        return -1;
    }
    listener_t *l = &g_listeners[g_nlisteners];
    uv_tcp_init(px_loop, &l->h.tcp);
    l->h.handle.data = l;
    l->is_tcp = true;
    l->open = true;
    g_nlisteners++;
    rc = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, v6 ? UV_TCP_IPV6ONLY : 0);
    if (rc == 0)
        rc = uv_listen(&l->h.stream, px_cfg->listen_backlog, on_connection);
    if (rc < 0) {
        fprintf(stderr, "pgshim: cannot listen on %s:%d: %s\n", host, port, uv_strerror(rc));
        return -1;
    }
    px_log_info("listening on %s:%d", host, port);
    return 0;
}

/* Resolves a host name in listen_addr to its first address (at start only, so blocking). */
static int listen_name(const char *host, int port)
{
    uv_getaddrinfo_t req;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    int rc = uv_getaddrinfo(px_loop, &req, NULL, host, NULL, &hints);
    if (rc < 0 || req.addrinfo == NULL) {
        fprintf(stderr, "pgshim: cannot resolve listen_addr \"%s\"\n", host);
        return -1;
    }
    char ip[64];
    struct addrinfo *ai = req.addrinfo;
    if (ai->ai_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)ai->ai_addr, ip, sizeof(ip));
    else
        uv_ip4_name((struct sockaddr_in *)ai->ai_addr, ip, sizeof(ip));
    uv_freeaddrinfo(req.addrinfo);
    return listen_tcp(ip, port);
}

static int listen_unix(const char *dir, int port)
{
    snprintf(g_socket_path, sizeof(g_socket_path), "%s/.s.PGSQL.%d", dir, port);
    unlink(g_socket_path);
    listener_t *l = &g_listeners[g_nlisteners];
    uv_pipe_init(px_loop, &l->h.pipe, 0);
    l->h.handle.data = l;
    l->is_tcp = false;
    l->open = true;
    g_nlisteners++;
    int rc = uv_pipe_bind(&l->h.pipe, g_socket_path);
    if (rc == 0)
        rc = uv_listen(&l->h.stream, px_cfg->listen_backlog, on_connection);
    if (rc < 0) {
        fprintf(stderr, "pgshim: cannot listen on %s: %s\n", g_socket_path, uv_strerror(rc));
        g_socket_path[0] = '\0';
        return -1;
    }
    chmod(g_socket_path, (mode_t)px_cfg->unix_socket_mode);
    px_log_info("listening on %s", g_socket_path);
    return 0;
}

int px_listen_start(void)
{
    char *addrs = strdup(px_cfg->listen_addr);
    if (addrs == NULL)
        return -1;
    int rc = 0;
    char *save = NULL;
    for (char *a = strtok_r(addrs, ", \t", &save); a != NULL && rc == 0;
         a = strtok_r(NULL, ", \t", &save)) {
        if (strcmp(a, "*") == 0) {
            rc = listen_tcp("0.0.0.0", px_cfg->listen_port);
            if (rc == 0 && listen_tcp("::", px_cfg->listen_port) < 0)
                px_log_warn("IPv6 listener not available; IPv4 only");
        } else if (uv_inet_pton(AF_INET, a, &(struct in_addr){0}) == 0 ||
                   strchr(a, ':') != NULL) {
            rc = listen_tcp(a, px_cfg->listen_port);
        } else {
            rc = listen_name(a, px_cfg->listen_port);
        }
    }
    free(addrs);
    if (rc == 0 && px_cfg->unix_socket_dir[0] != '\0')
        rc = listen_unix(px_cfg->unix_socket_dir, px_cfg->listen_port);
    return rc;
}

void px_listen_stop(void)
{
    for (int i = 0; i < g_nlisteners; i++) {
        if (g_listeners[i].open && !uv_is_closing(&g_listeners[i].h.handle))
            uv_close(&g_listeners[i].h.handle, NULL);
        g_listeners[i].open = false;
    }
    if (g_socket_path[0] != '\0')
        unlink(g_socket_path);
    g_socket_path[0] = '\0';
}
