/* http.h — the libmicrohttpd front end of dalle-server.
 *
 * Contract: dalle_http_start binds and starts serving at once (routes that need the model
 * answer 503 until srv->sched is set). dalle_http_quiesce stops accepting connections (new
 * ones are refused, those not yet accepted are reset; open ones go on);
 * dalle_http_stop waits up to wait_s for responses of resumed jobs to be sent, then stops
 * the daemon. Call stop only after every submitted job is done (dalle_scheduler_drain).
 */
#ifndef DALLE_SERVER_HTTP_H
#define DALLE_SERVER_HTTP_H

#include <stddef.h>

#include "server/server.h"

typedef struct dalle_http dalle_http;

int dalle_http_start(dalle_http **out, dalle_server *srv, char *msg, size_t msg_size);
int dalle_http_port(const dalle_http *h);
void dalle_http_quiesce(dalle_http *h);
void dalle_http_stop(dalle_http *h, double wait_s);

#endif /* DALLE_SERVER_HTTP_H */
