/* conn_guard.h — connection limits and receive deadlines around libmicrohttpd (0.9.75).
 *
 * Contract: the guard is handed to MHD as its accept policy, its connection-notify and its
 * URI-log callback (dalle_conn_guard_options). It counts open connections and refuses a
 * new one at once (MHD closes the accepted socket, nothing is read) while --max-conns are
 * open; MHD's own limit is set above ours, so nothing waits in the listen backlog.
 * Deadlines (a reaper thread checks them every DALLE_GUARD_TICK_MS):
 *   - a connection must send the request line of its next request within --timeout
 *     seconds of opening or of its previous response (closed silently otherwise: this is
 *     also how an idle keep-alive connection ends);
 *   - once the request line is in, headers and body must be complete within
 *     --receive-timeout seconds, however slowly the bytes trickle: a late one gets a JSON
 *     408 and is closed.
 * The handler reports progress with dalle_conn_guard_received (the request is complete or
 * answered) and dalle_conn_guard_completed (its response was sent). dalle_conn_guard_reject
 * writes a complete JSON error response straight to the socket and shuts it down, for the
 * cases where MHD can no longer queue a response (mid-body); the handler then returns
 * MHD_NO and MHD closes the connection. dalle_conn_guard_raw_uri_ok tells whether the
 * request's raw URI held a NUL or another control byte, percent-encoded or not.
 * Thread-safety: every function may be called from any MHD thread; one mutex guards the
 * list of connections, and the reaper only touches a socket under it (MHD's CLOSED
 * notification comes before it closes the fd, so a shut-down fd is never a reused one).
 */
#ifndef DALLE_SERVER_CONN_GUARD_H
#define DALLE_SERVER_CONN_GUARD_H

#include <microhttpd.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct dalle_conn_guard dalle_conn_guard;

/* max_conns open connections; idle_s to the request line, receive_s to the full request. */
dalle_conn_guard *dalle_conn_guard_create(long max_conns, long idle_s, long receive_s);
/* After MHD_stop_daemon: stops the reaper and frees. */
void dalle_conn_guard_destroy(dalle_conn_guard *g);

/* MHD's limit for MHD_OPTION_CONNECTION_LIMIT: ours plus room for accepts in flight. */
unsigned dalle_conn_guard_mhd_limit(const dalle_conn_guard *g);

/* The MHD callbacks (cls = the guard). */
enum MHD_Result dalle_conn_guard_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen);
void dalle_conn_guard_notify(void *cls, struct MHD_Connection *c, void **socket_ctx,
                             enum MHD_ConnectionNotificationCode code);
void *dalle_conn_guard_uri(void *cls, const char *uri, struct MHD_Connection *c);

/* The raw URI of c's current request held no control byte (given the version pointer MHD
 * hands the handler, which follows the raw URI in MHD's buffer). */
int dalle_conn_guard_raw_uri_ok(struct MHD_Connection *c, const char *url, const char *version);

/* The status of a response the guard wrote to c's socket itself (408, or a rejection's),
 * or 0; for the access log, before dalle_conn_guard_completed. */
int dalle_conn_guard_answered(struct MHD_Connection *c);

void dalle_conn_guard_received(struct MHD_Connection *c);
void dalle_conn_guard_completed(struct MHD_Connection *c);

/* Write "HTTP/1.1 status reason" with the JSON body and Connection: close to c's socket,
 * then shut the socket down; 0, or -1 when c's socket is unknown. */
int dalle_conn_guard_reject(struct MHD_Connection *c, int status, const char *request_id,
                            const char *body, size_t len);

#endif /* DALLE_SERVER_CONN_GUARD_H */
