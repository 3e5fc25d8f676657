/* scheduler.h — the bounded request queue and the thread that generates.
 *
 * Contract: dalle_scheduler_submit never blocks: it queues the job or says why not (full,
 * closed). Every queued job is finished exactly once, by a call of job->done from the
 * scheduler thread (or from dalle_scheduler_drain's caller for jobs failed at shutdown),
 * with status/body set; after done returns the scheduler never touches the job again. The
 * job's memory (and req, text) belongs to the submitter.
 */
#ifndef DALLE_SERVER_SCHEDULER_H
#define DALLE_SERVER_SCHEDULER_H

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
    void (*done)(dalle_job *job);
    /* optional: called from the scheduler thread every DALLE_PROGRESS_EVERY decode steps */
    void (*progress)(dalle_job *job, int step, int steps);
    void *user;
    atomic_int abandoned; /* set by the submitter when the client is gone (stop polling fd) */
    /* out */
    int status;      /* HTTP status */
    char *body;      /* malloc'ed JSON (NULL only when out of memory) */
    size_t body_len;
    int retry_after; /* seconds for Retry-After, 0 for none */
    int images;      /* images in the response */
    /* owned by the scheduler while the job is queued or running */
    dalle_job *next;
    dalle_scheduler *sched;
    int32_t *codes; /* [n_images, image_length] */
    int handle;     /* dalle_job_start handle */
    int gone;       /* the client hung up */
    double t_admit; /* taken from the queue */
    double t_start; /* decode start */
};

typedef enum { DALLE_SUBMIT_OK, DALLE_SUBMIT_FULL, DALLE_SUBMIT_CLOSED } dalle_submit_result;

/* Creates the dalle_state and starts the scheduler thread. */
dalle_status dalle_scheduler_new(dalle_scheduler **out, dalle_server *srv, dalle_error *err);
dalle_submit_result dalle_scheduler_submit(dalle_scheduler *s, dalle_job *job);
/* Queued requests, queue capacity, running requests and their images. */
void dalle_scheduler_stats(dalle_scheduler *s, int *queued, int *capacity, int *in_flight,
                           int *batch_images);

/* Shutdown: refuse new jobs, fail the queued ones with 503, let the running ones finish for
 * up to drain_s seconds (then cancel them with 503), and join the thread. */
void dalle_scheduler_drain(dalle_scheduler *s, double drain_s);
void dalle_scheduler_free(dalle_scheduler *s);

/* Monotonic milliseconds. */
double dalle_server_now_ms(void);

#endif /* DALLE_SERVER_SCHEDULER_H */
