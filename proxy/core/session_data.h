/* session_data.h - the device's message (session_data.c). Private to
 * proxy/core/session*.c. */
#ifndef STP_SESSION_DATA_H
#define STP_SESSION_DATA_H

#include "smtp-tls-proxy/session.h"

/* Answer 354 (the upstream's, or ours in spool mode) and take the
 * device's message from here on. */
void session_data_start(session *s);
size_t session_data_feed(session *s, const char *p, size_t n);
/* Drop the header rewrite_ctx (end of message or of the session). */
void session_data_stop(session *s);

#endif
