/* encode_pool.h — the small thread pool that JPEG-encodes and base64s images and finishes
 * jobs, off the scheduler threads (--jpeg-threads).
 *
 * Contract: each worker thread owns one TurboJPEG encoder, reused for every task it runs,
 * and one FIFO lane. dalle_encode_pool_submit never blocks and never fails (the task is
 * linked into the lane through its own `next`); tasks of one lane run in submission order,
 * one at a time, so a caller that keeps all tasks of one job on one lane (previews, then the
 * final result) gets them delivered in order. dalle_encode_pool_free runs every task still
 * queued, then joins the threads.
 */
#ifndef DALLE_SERVER_ENCODE_POOL_H
#define DALLE_SERVER_ENCODE_POOL_H

#include "common/jpeg.h"
#include "dalle.h"

typedef struct dalle_pool_task dalle_pool_task;
struct dalle_pool_task {
    void (*run)(dalle_pool_task *t, dalle_jpeg_encoder *enc); /* on a pool thread */
    dalle_pool_task *next;                                    /* the pool's */
};

typedef struct dalle_encode_pool dalle_encode_pool;

dalle_status dalle_encode_pool_new(dalle_encode_pool **out, int threads, dalle_error *err);
/* The lane for a new job (round robin). */
int dalle_encode_pool_lane(dalle_encode_pool *p);
void dalle_encode_pool_submit(dalle_encode_pool *p, int lane, dalle_pool_task *t);
void dalle_encode_pool_free(dalle_encode_pool *p);

#endif /* DALLE_SERVER_ENCODE_POOL_H */
