/* session_data.h - the device's message (session_data.c). Private to
 * proxy/core/session*.c. */
#ifndef STP_SESSION_DATA_H
#define STP_SESSION_DATA_H

#include "smtp-tls-proxy/session.h"

void session_data_begin(session *s);
size_t session_data_feed(session *s, const char *p, size_t n);
/* Drop the header rewrite_ctx (end of message or of the session). */
void session_data_stop(session *s);

#endif
