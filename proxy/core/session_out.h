/* session_out.h - shared primitives of the LAN session (session_out.c):
 * replies, state, the upstream drop, the transaction and its log line.
 * Private to proxy/core/session*.c. */
#ifndef STP_SESSION_OUT_H
#define STP_SESSION_OUT_H

#include "smtp-tls-proxy/session.h"

void session_out_reply(session *s, const char *line);
void session_out_replyf(session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* An upstream reply relayed line by line, its code preserved. */
void session_out_relay(session *s, const smtp_reply *r);
void session_out_state(session *s, session_state st);
void session_out_close(session *s);
void session_out_up_drop(session *s, bool graceful);
void session_out_log_message(session *s, const char *result, const char *reply_line);
void session_out_log_relayed(session *s, const smtp_reply *r);
/* The message went to the spool as spool_id (the reply says so too). */
void session_out_log_spooled(session *s, const char *reply_line, const char *spool_id);
/* An accepted recipient, for the observer-only _rcpt_list. */
void session_out_note_rcpt(session *s, const char *addr);
void session_out_txn_clear(session *s);
/* The device started over (EHLO, HELO, STARTTLS): forget the transaction,
 * and let go of an upstream connection that holds one. */
void session_out_txn_abandon(session *s);
void session_out_wait_for(session *s, session_wait w);
void session_out_done_waiting(session *s, session_state next);
/* The envelope sender for the upstream (the route's rewrite, if any). */
const char *session_out_sender(const session *s);
size_t session_out_listener_index(const session *s);

#endif
