/*
 * px_list: intrusive circular doubly-linked lists, the only container the proxy uses for its
 * connection sets (pool queues, login lists). A node is either linked into exactly one list or
 * self-linked ("detached"); the state of a client or server says which list that is, and only
 * the set-state functions move nodes between lists.
 */
#ifndef PGSHIM_PROXY_PX_LIST_H
#define PGSHIM_PROXY_PX_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct px_list {
    struct px_list *next, *prev;
} px_list_t;

static inline void px_list_init(px_list_t *l) { l->next = l->prev = l; }
static inline bool px_list_empty(const px_list_t *l) { return l->next == l; }

/* Appends n at the tail of l (FIFO order: px_list_first() is the oldest). */
static inline void px_list_append(px_list_t *l, px_list_t *n)
{
    n->prev = l->prev;
    n->next = l;
    l->prev->next = n;
    l->prev = n;
}

/* Unlinks n from whatever list holds it; n becomes detached. Safe on a detached node. */
static inline void px_list_del(px_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->next = n->prev = n;
}

static inline px_list_t *px_list_first(const px_list_t *l) { return px_list_empty(l) ? NULL : l->next; }

static inline size_t px_list_count(const px_list_t *l)
{
    size_t n = 0;
    for (const px_list_t *p = l->next; p != l; p = p->next)
        n++;
    return n;
}

#define px_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* Iterates safely (the current node may be unlinked inside the body). */
#define px_list_foreach_safe(it, tmp, head) \
    for ((it) = (head)->next, (tmp) = (it)->next; (it) != (head); (it) = (tmp), (tmp) = (it)->next)

#endif
