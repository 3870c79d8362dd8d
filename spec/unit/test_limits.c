/* Tests for the connection limits shared by workers (core/conn_limits.h): per_ip, max_connections
 * and the rate of new connections count every caller; a released connection gives its place
 * back; threads admitting and releasing at once never let more in than the limits allow and
 * end with nothing counted (also under ThreadSanitizer: build/unit-tests-tsan). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>

#include <criterion/criterion.h>

#include "conn_limits.h"

static struct ip_key key_of(const char *addr)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    inet_pton(AF_INET, addr, &a.sin_addr);
    return ip_key_of((const struct sockaddr *)&a);
}

Test(limits, per_ip_max_connections_and_rate)
{
    struct limits_shared l;
    limits_init(&l, 5, 3, 0);
    struct ip_key a = key_of("10.0.0.1"), b = key_of("10.0.0.2");
    for (int i = 0; i < 3; i++) cr_assert_eq(limits_admit(&l, &a, 0), LIMITS_OK);
    cr_assert_eq(limits_admit(&l, &a, 0), LIMITS_PER_IP);
    cr_assert_eq(limits_admit(&l, &b, 0), LIMITS_OK);
    cr_assert_eq(limits_admit(&l, &b, 0), LIMITS_OK);
    cr_assert_eq(limits_admit(&l, &b, 0), LIMITS_FULL);
    cr_assert_eq(limits_counted(&l), 5);
    limits_release(&l, &a);
    cr_assert_eq(limits_admit(&l, &b, 0), LIMITS_OK, "a released place is free again");
    cr_assert_eq(limits_admit(&l, &a, 0), LIMITS_FULL);
    limits_free(&l);

    /* 2 new connections a second per address (burst 2). */
    limits_init(&l, 0, 0, 2);
    cr_assert_eq(limits_admit(&l, &a, 10.0), LIMITS_OK);
    cr_assert_eq(limits_admit(&l, &a, 10.0), LIMITS_OK);
    cr_assert_eq(limits_admit(&l, &a, 10.0), LIMITS_RATE);
    cr_assert_eq(limits_admit(&l, &b, 10.0), LIMITS_OK, "another address has its own bucket");
    cr_assert_eq(limits_admit(&l, &a, 10.6), LIMITS_OK, "refilled");
    limits_free(&l);
}

#define THREADS 4
#define ROUNDS 20000
#define PER_IP 5

struct worker_arg {
    struct limits_shared *l;
    int over; /* times this thread saw more admitted than allowed */
};

static unsigned in_now; /* atomic: admitted and not yet released, every thread */

static void *churn(void *arg)
{
    struct worker_arg *w = arg;
    struct ip_key k = key_of("10.0.0.9");
    int held = 0;
    for (int i = 0; i < ROUNDS; i++) {
        if (held < 3 && limits_admit(w->l, &k, 0) == LIMITS_OK) {
            held++;
            if (__atomic_add_fetch(&in_now, 1, __ATOMIC_SEQ_CST) > PER_IP) w->over++;
        } else if (held) {
            __atomic_sub_fetch(&in_now, 1, __ATOMIC_SEQ_CST);
            limits_release(w->l, &k);
            held--;
        }
    }
    while (held--) {
        __atomic_sub_fetch(&in_now, 1, __ATOMIC_SEQ_CST);
        limits_release(w->l, &k);
    }
    return NULL;
}

Test(limits, threads_never_pass_the_limit)
{
    struct limits_shared l;
    limits_init(&l, 100, PER_IP, 0);
    pthread_t th[THREADS];
    struct worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct worker_arg){ &l, 0 };
        pthread_create(&th[i], NULL, churn, &args[i]);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++) cr_assert_eq(args[i].over, 0, "thread %d saw too many", i);
    cr_assert_eq(limits_counted(&l), 0, "everything released");
    struct ip_key k = key_of("10.0.0.9");
    for (int i = 0; i < PER_IP; i++) cr_assert_eq(limits_admit(&l, &k, 0), LIMITS_OK);
    cr_assert_eq(limits_admit(&l, &k, 0), LIMITS_PER_IP);
    limits_free(&l);
}
