/* encode_pool.c — worker threads with one FIFO lane and one JPEG encoder each
 * (encode_pool.h). A lane's mutex guards its list and `stop`; the encoder is its thread's.
 */
#include "server/encode_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common/error.h"

typedef struct {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    dalle_pool_task *head, *tail; /* guarded by mu */
    int stop;                     /* guarded by mu */
    int started;
    dalle_jpeg_encoder *enc;
} lane;

struct dalle_encode_pool {
    int n;
    atomic_uint next_lane;
    lane *lanes;
};

static void *lane_main(void *arg) {
    lane *l = arg;
    for (;;) {
        pthread_mutex_lock(&l->mu);
        while (!l->head && !l->stop)
            pthread_cond_wait(&l->cv, &l->mu);
        dalle_pool_task *t = l->head;
        if (t) {
            l->head = t->next;
            if (!l->head)
                l->tail = NULL;
        }
        pthread_mutex_unlock(&l->mu);
        if (!t)
            return NULL; /* stopped and empty */
        t->run(t, l->enc);
    }
}

dalle_status dalle_encode_pool_new(dalle_encode_pool **out, int threads, dalle_error *err) {
    *out = NULL;
    dalle_encode_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->lanes = calloc((size_t)threads, sizeof *p->lanes))) {
        free(p);
        return dalle_error_set(err, DALLE_ERR_NOMEM, "out of memory");
    }
    dalle_status st = DALLE_OK;
    for (; p->n < threads && st == DALLE_OK; p->n++) {
        lane *l = &p->lanes[p->n];
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        st = dalle_jpeg_encoder_new(&l->enc, err);
        if (st == DALLE_OK && pthread_create(&l->thread, NULL, lane_main, l))
            st = dalle_error_set(err, DALLE_ERR_NOMEM, "cannot start a JPEG thread");
        l->started = st == DALLE_OK;
    }
    if (st != DALLE_OK) {
        dalle_encode_pool_free(p);
        return st;
    }
    *out = p;
    return DALLE_OK;
}

int dalle_encode_pool_lane(dalle_encode_pool *p) {
    return (int)(atomic_fetch_add(&p->next_lane, 1) % (unsigned)p->n);
}

void dalle_encode_pool_submit(dalle_encode_pool *p, int lane_index, dalle_pool_task *t) {
    DALLE_ASSERT(lane_index >= 0 && lane_index < p->n);
    lane *l = &p->lanes[lane_index];
    t->next = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->tail)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

void dalle_encode_pool_free(dalle_encode_pool *p) {
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        lane *l = &p->lanes[i];
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_signal(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    for (int i = 0; i < p->n; i++) {
        lane *l = &p->lanes[i];
        if (l->started)
            pthread_join(l->thread, NULL);
        dalle_jpeg_encoder_free(l->enc);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
    }
    free(p->lanes);
    free(p);
}
