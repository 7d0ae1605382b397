/*
 * px_listen: the TCP listeners (listen_addr, comma separated, "*" = all IPv4 and IPv6) and the
 * Unix socket listener (unix_socket_dir/.s.PGSQL.<listen_port>, so `psql -h DIR -p PORT`
 * works). Accepted connections become clients (client.c).
 */
#ifndef PGSHIM_PROXY_PX_LISTEN_H
#define PGSHIM_PROXY_PX_LISTEN_H

/* Opens every configured listener. Returns 0, or -1 after printing why to stderr. */
int px_listen_start(void);
/* Closes the listeners (graceful shutdown) and removes the Unix socket file. */
void px_listen_stop(void);

#endif
