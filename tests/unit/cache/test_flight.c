/*
 * Single-flight: one leader per key, waiters get the leader's result or its abandonment, in
 * arrival order, never after cancelling; keys are independent; the table grows.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "cache_test_util.h"

typedef struct seen {
    int calls;
    int status;
    uint32_t nrows;
    int order;
} seen_t;

static int order_counter;

static void waiter_cb(void *arg, int status, const cache_result_t *res)
{
    seen_t *s = arg;
    s->calls++;
    s->status = status;
    s->nrows = res ? res->nrows : 0;
    s->order = ++order_counter;
}

Test(flight, lead_wait_finish)
{
    cache_flights_t *t = cache_flights_new();
    cache_flight_t *f, *f2;
    cache_waiter_t *w;
    seen_t s1 = {0}, s2 = {0};
    order_counter = 0;

    cr_assert_eq(cache_flight_begin(t, "k1", 2, waiter_cb, NULL, &f, &w), CACHE_FLIGHT_LEAD);
    cr_assert_not_null(f);
    cr_assert_null(w);
    cr_assert_eq(cache_flight_begin(t, "k1", 2, waiter_cb, &s1, &f2, &w), CACHE_FLIGHT_WAIT);
    cr_assert_null(f2);
    cr_assert_not_null(w);
    cr_assert_eq(cache_flight_begin(t, "k1", 2, waiter_cb, &s2, &f2, &w), CACHE_FLIGHT_WAIT);
    cr_assert_eq(cache_flights_active(t), 1);
    cr_assert_eq(cache_flights_waiting(t), 2);

    pgw_buf_t d, b;
    pgw_buf_init(&d);
    pgw_buf_init(&b);
    tu_describe(&d, "id");
    tu_body(&b, 4);
    cache_flight_finish(t, f, d.data, d.len, b.data, b.len);
    cr_assert_eq(s1.calls, 1);
    cr_assert_eq(s1.status, CACHE_OK);
    cr_assert_eq(s1.nrows, 4);
    cr_assert_eq(s2.calls, 1);
    cr_assert_lt(s1.order, s2.order);
    cr_assert_eq(cache_flights_active(t), 0);
    cr_assert_eq(cache_flights_waiting(t), 0);

    /* The key is free again. */
    cr_assert_eq(cache_flight_begin(t, "k1", 2, waiter_cb, NULL, &f, &w), CACHE_FLIGHT_LEAD);
    cache_flight_abandon(t, f);
    pgw_buf_free(&d);
    pgw_buf_free(&b);
    cache_flights_free(t);
}

Test(flight, abandon_and_cancel)
{
    cache_flights_t *t = cache_flights_new();
    cache_flight_t *f, *fx;
    cache_waiter_t *w1, *w2, *w3;
    seen_t s1 = {0}, s2 = {0}, s3 = {0};
    cr_assert_eq(cache_flight_begin(t, "k", 1, waiter_cb, NULL, &f, &w1), CACHE_FLIGHT_LEAD);
    cr_assert_eq(cache_flight_begin(t, "k", 1, waiter_cb, &s1, &fx, &w1), CACHE_FLIGHT_WAIT);
    cr_assert_eq(cache_flight_begin(t, "k", 1, waiter_cb, &s2, &fx, &w2), CACHE_FLIGHT_WAIT);
    cr_assert_eq(cache_flight_begin(t, "k", 1, waiter_cb, &s3, &fx, &w3), CACHE_FLIGHT_WAIT);
    cache_flight_cancel(t, w2);
    cache_flight_cancel(t, w3);
    cr_assert_eq(cache_flights_waiting(t), 1);
    cache_flight_abandon(t, f);
    cr_assert_eq(s1.calls, 1);
    cr_assert_eq(s1.status, CACHE_EABANDONED);
    cr_assert_eq(s2.calls, 0);
    cr_assert_eq(s3.calls, 0);
    cache_flights_free(t);
}

Test(flight, malformed_result_abandons)
{
    cache_flights_t *t = cache_flights_new();
    cache_flight_t *f, *fx;
    cache_waiter_t *w;
    seen_t s = {0};
    cr_assert_eq(cache_flight_begin(t, "k", 1, waiter_cb, NULL, &f, &w), CACHE_FLIGHT_LEAD);
    cr_assert_eq(cache_flight_begin(t, "k", 1, waiter_cb, &s, &fx, &w), CACHE_FLIGHT_WAIT);
    const uint8_t junk[] = {'C', 0, 0, 0, 99};
    cache_flight_finish(t, f, NULL, 0, junk, sizeof junk);
    cr_assert_eq(s.status, CACHE_EABANDONED);
    cache_flights_free(t);
}

Test(flight, keys_are_independent_and_table_grows)
{
    cache_flights_t *t = cache_flights_new();
    enum { N = 1000 };
    static cache_flight_t *fl[N];
    char key[32];
    cache_waiter_t *w;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        cr_assert_eq(cache_flight_begin(t, key, strlen(key), waiter_cb, NULL, &fl[i], &w),
                     CACHE_FLIGHT_LEAD);
    }
    cr_assert_eq(cache_flights_active(t), N);
    /* Prefix keys are distinct keys. */
    cache_flight_t *f;
    cr_assert_eq(cache_flight_begin(t, "key-1", 4, waiter_cb, NULL, &f, &w), CACHE_FLIGHT_LEAD);
    cache_flight_abandon(t, f);
    seen_t s = {0};
    cr_assert_eq(cache_flight_begin(t, "key-777", 7, waiter_cb, &s, &f, &w), CACHE_FLIGHT_WAIT);
    for (int i = 0; i < N; i++)
        cache_flight_abandon(t, fl[i]);
    cr_assert_eq(s.calls, 1);
    cr_assert_eq(cache_flights_active(t), 0);
    cache_flights_free(t);
}

/* A waiter told "abandoned" typically becomes the next leader from inside its callback. */
typedef struct relead {
    cache_flights_t *t;
    cache_flight_t *f;
    int rc;
} relead_t;

static void relead_cb(void *arg, int status, const cache_result_t *res)
{
    relead_t *r = arg;
    cache_waiter_t *w;
    r->rc = cache_flight_begin(r->t, "k", 1, waiter_cb, NULL, &r->f, &w);
}

Test(flight, new_leader_from_callback)
{
    cache_flights_t *t = cache_flights_new();
    cache_flight_t *f, *fx;
    cache_waiter_t *w;
    relead_t r = {t, NULL, 0};
    seen_t s = {0};
    cr_assert_eq(cache_flight_begin(t, "k", 1, waiter_cb, NULL, &f, &w), CACHE_FLIGHT_LEAD);
    cr_assert_eq(cache_flight_begin(t, "k", 1, relead_cb, &r, &fx, &w), CACHE_FLIGHT_WAIT);
    cr_assert_eq(cache_flight_begin(t, "k", 1, waiter_cb, &s, &fx, &w), CACHE_FLIGHT_WAIT);
    cache_flight_abandon(t, f);
    cr_assert_eq(r.rc, CACHE_FLIGHT_LEAD);
    cr_assert_eq(s.calls, 1); /* the old flight's later waiter still got its answer */
    cr_assert_eq(cache_flights_active(t), 1);
    cache_flight_abandon(t, r.f);
    cache_flights_free(t);
}

Test(flight, free_abandons_waiters)
{
    cache_flights_t *t = cache_flights_new();
    cache_flight_t *f, *fx;
    cache_waiter_t *w;
    seen_t s = {0};
    cr_assert_eq(cache_flight_begin(t, "k", 1, waiter_cb, NULL, &f, &w), CACHE_FLIGHT_LEAD);
    cr_assert_eq(cache_flight_begin(t, "k", 1, waiter_cb, &s, &fx, &w), CACHE_FLIGHT_WAIT);
    cache_flights_free(t);
    cr_assert_eq(s.calls, 1);
    cr_assert_eq(s.status, CACHE_EABANDONED);
}
