/*
 * Single-flight table: at most one computation per key in this process; later misses of the
 * same key wait for it.
 *
 * Invariants: a key is in the table exactly while its leader has neither finished nor
 * abandoned; each waiter's callback fires at most once, and never after it was cancelled.
 * Waiter callbacks run after the flight has been unlinked, so a callback may begin a new flight
 * for the same key (e.g. after CACHE_EABANDONED) without seeing the old one.
 */
#include <stdlib.h>
#include <string.h>

#include "cache.h"

struct cache_waiter {
    cache_waiter_t *next;
    cache_waiter_t *prev;
    cache_flight_t *flight;
    cache_flight_cb cb;
    void *arg;
};

struct cache_flight {
    cache_flight_t *next;         /* bucket chain */
    uint64_t hash;
    char *key;
    size_t key_len;
    cache_waiter_t *waiters;      /* doubly linked, head insertion; fired in arrival order */
    cache_waiter_t *last;
};

struct cache_flights {
    cache_flight_t **buckets;
    size_t nbuckets;              /* power of two */
    size_t nflights;
    size_t nwaiters;
};

cache_flights_t *cache_flights_new(void)
{
    cache_flights_t *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->nbuckets = 64;
    t->buckets = calloc(t->nbuckets, sizeof *t->buckets);
    if (t->buckets == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

static cache_flight_t **find_slot(cache_flights_t *t, uint64_t h, const void *key, size_t len)
{
    cache_flight_t **pp = &t->buckets[h & (t->nbuckets - 1)];
    while (*pp != NULL) {
        cache_flight_t *f = *pp;
        if (f->hash == h && f->key_len == len && memcmp(f->key, key, len) == 0)
            return pp;
        pp = &f->next;
    }
    return pp;
}

static void grow(cache_flights_t *t)
{
    size_t n = t->nbuckets * 2;
    cache_flight_t **b = calloc(n, sizeof *b);
    if (b == NULL)
        return; /* keep the smaller table; chains just get longer */
    for (size_t i = 0; i < t->nbuckets; i++) {
        cache_flight_t *f = t->buckets[i];
        while (f != NULL) {
            cache_flight_t *next = f->next;
            f->next = b[f->hash & (n - 1)];
            b[f->hash & (n - 1)] = f;
            f = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

int cache_flight_begin(cache_flights_t *t, const void *key, size_t key_len, cache_flight_cb cb,
                       void *arg, cache_flight_t **flight, cache_waiter_t **waiter)
{
    *flight = NULL;
    *waiter = NULL;
    uint64_t h = cache_fnv1a(CACHE_FNV_INIT, key, key_len);
    cache_flight_t **pp = find_slot(t, h, key, key_len);
    if (*pp != NULL) {
        cache_waiter_t *w = calloc(1, sizeof *w);
        if (w == NULL)
            return CACHE_ENOMEM;
        cache_flight_t *f = *pp;
        w->flight = f;
        w->cb = cb;
        w->arg = arg;
        w->prev = f->last;
        if (f->last)
            f->last->next = w;
        else
            f->waiters = w;
        f->last = w;
        t->nwaiters++;
        *waiter = w;
        return CACHE_FLIGHT_WAIT;
    }
    cache_flight_t *f = calloc(1, sizeof *f);
    if (f == NULL)
        return CACHE_ENOMEM;
    f->key = malloc(key_len ? key_len : 1);
    if (f->key == NULL) {
        free(f);
        return CACHE_ENOMEM;
    }
    memcpy(f->key, key, key_len);
    f->key_len = key_len;
    f->hash = h;
    *pp = f;
    t->nflights++;
    if (t->nflights > t->nbuckets)
        grow(t);
    *flight = f;
    return CACHE_FLIGHT_LEAD;
}

static void unlink_flight(cache_flights_t *t, cache_flight_t *f)
{
    cache_flight_t **pp = find_slot(t, f->hash, f->key, f->key_len);
    if (*pp == f) {
        *pp = f->next;
        t->nflights--;
    }
}

/* Unlinks the flight, then fires its waiters in arrival order. Each waiter is popped before its
   callback runs, so a callback may cancel a later waiter of the same flight or start a new
   flight for the same key (which gets a fresh entry because this one is already unlinked). */
static void complete(cache_flights_t *t, cache_flight_t *f, int status, const cache_result_t *res)
{
    unlink_flight(t, f);
    while (f->waiters != NULL) {
        cache_waiter_t *w = f->waiters;
        f->waiters = w->next;
        if (f->waiters)
            f->waiters->prev = NULL;
        else
            f->last = NULL;
        t->nwaiters--;
        cache_flight_cb cb = w->cb;
        void *arg = w->arg;
        free(w);
        if (cb)
            cb(arg, status, res);
    }
    free(f->key);
    free(f);
}

void cache_flight_finish(cache_flights_t *t, cache_flight_t *f, const uint8_t *describe,
                         size_t describe_len, const uint8_t *body, size_t body_len)
{
    cache_result_t res;
    if (cache_payload_check(describe, describe_len, body, body_len, &res) != 0) {
        complete(t, f, CACHE_EABANDONED, NULL);
        return;
    }
    complete(t, f, CACHE_OK, &res);
}

void cache_flight_abandon(cache_flights_t *t, cache_flight_t *f)
{
    complete(t, f, CACHE_EABANDONED, NULL);
}

void cache_flight_cancel(cache_flights_t *t, cache_waiter_t *w)
{
    cache_flight_t *f = w->flight;
    if (w->prev)
        w->prev->next = w->next;
    else
        f->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        f->last = w->prev;
    t->nwaiters--;
    free(w);
}

void cache_flights_free(cache_flights_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->nbuckets; i++) {
        while (t->buckets[i] != NULL)
            complete(t, t->buckets[i], CACHE_EABANDONED, NULL);
    }
    free(t->buckets);
    free(t);
}

size_t cache_flights_active(const cache_flights_t *t)
{
    return t->nflights;
}

size_t cache_flights_waiting(const cache_flights_t *t)
{
    return t->nwaiters;
}
