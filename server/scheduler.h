/* scheduler.h — one scheduler per compute device: a bounded request queue and the thread
 * that generates with iteration-level batching; dispatch to the least-loaded one.
 *
 * Contract: dalle_scheduler_submit never blocks: it queues the job or says why not (full,
 * closed). Every queued job is finished exactly once: its done callback runs on a thread
 * of the encode pool (encode_pool.h) with status/body set, after every preview of the job
 * (same pool lane); after done returns nobody touches the job again. The job's memory
 * (and req, text) belongs to the submitter.
 */
#ifndef DALLE_SERVER_SCHEDULER_H
#define DALLE_SERVER_SCHEDULER_H

#include "server/encode_pool.h"
#include "server/server.h"

#define DALLE_PROGRESS_EVERY 16

typedef struct dalle_job dalle_job;
struct dalle_job {
    /* in */
    dalle_request req;
    dalle_text text; /* req.prompt encoded (dalle_text_encode) */
    double text_ms;  /* time spent encoding it */
    char id[DALLE_REQUEST_ID_MAX + 1];
    int fd;          /* the client's socket, polled for hang-up; -1 for none */
    double t_submit; /* dalle_server_now_ms() at submission (after the text encoding) */
    void (*done)(dalle_job *job); /* on a pool thread */
    /* optional: called from the scheduler thread every DALLE_PROGRESS_EVERY decode steps */
    void (*progress)(dalle_job *job, int step, int steps);
    /* optional, with req.preview_every: a pool thread hands over each preview as JSON
     * {"step", "steps", "images": [base64 JPEG, by index]} */
    void (*preview)(dalle_job *job, const char *json, size_t len);
    void *user;
    atomic_int abandoned; /* set by the submitter when the client is gone (stop polling fd) */
    /* out */
    int status; /* HTTP status */
    char *body; /* malloc'ed JSON (NULL only when out of memory) */
    size_t body_len;
    int retry_after; /* seconds for Retry-After, 0 for none */
    int images;      /* images in the response */
    /* owned by the scheduler while the job is queued or running, then by the pool */
    dalle_job *next;
    dalle_scheduler *sched;
    int lane;     /* encode pool lane of all its tasks */
    uint8_t *rgb; /* [n_images, R, R, 3] dalle_job_finish's pixels, best first, for the pool
                     (while a request in parts runs: the finished parts' images by index) */
    float scores[DALLE_SERVER_MAX_IMAGES];  /* of each rgb entry (parts running: by index) */
    int32_t order[DALLE_SERVER_MAX_IMAGES]; /* the image index of each rgb entry */
    int part_first, part_n; /* the images of the running part (all of them: 0, n_images) */
    int handle;             /* dalle_job_start handle of the running part */
    int decoded;            /* its codes are complete */
    int gone;               /* the client hung up */
    int no_memory;          /* stopped: the backend ran out of memory */
    double t_admit;         /* taken from the queue */
    double t_start;         /* decode start */
    double decode_ms, vqgan_ms, clip_ms;
    dalle_pool_task task; /* finishing: JPEG + JSON (status 0) or the error body, then done */
};

typedef enum { DALLE_SUBMIT_OK, DALLE_SUBMIT_FULL, DALLE_SUBMIT_CLOSED } dalle_submit_result;

/* Creates the dalle_state on model's device and starts the scheduler thread. */
dalle_status dalle_scheduler_new(dalle_scheduler **out, dalle_server *srv, dalle_model *model,
                                 dalle_error *err);
/* Queue on s; *position = jobs waiting on s, this one included. */
dalle_submit_result dalle_scheduler_submit(dalle_scheduler *s, dalle_job *job, int *position);
/* Queue on the least-loaded scheduler of srv (images queued + running, then fewest jobs
 * queued, then the lowest index) that has room; FULL when none has. */
dalle_submit_result dalle_scheduler_dispatch(dalle_server *srv, dalle_job *job, int *position);
/* Queued requests, queue capacity, running requests and their images. */
void dalle_scheduler_stats(dalle_scheduler *s, int *queued, int *capacity, int *in_flight,
                           int *batch_images);

/* Shutdown: refuse new jobs, fail the queued ones with 503, let the running ones finish for
 * up to drain_s seconds (then cancel them with 503), and join the thread. With `fault` the
 * errors say that a device failed (code device_error) instead of shutting_down. */
void dalle_scheduler_drain(dalle_scheduler *s, double drain_s, int fault);
void dalle_scheduler_free(dalle_scheduler *s);

/* Called by the device-fault handler: when the calling thread is a scheduler's, refuse new
 * jobs and fail every queued, starting, running and finishing job of that scheduler with
 * 503 device_error without touching the device, and return 1; otherwise return 0. */
int dalle_scheduler_fault_here(void);

/* Monotonic milliseconds. */
double dalle_server_now_ms(void);

#endif /* DALLE_SERVER_SCHEDULER_H */
