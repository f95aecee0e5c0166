/* session_spool.h - spool mode of the LAN session (session_spool.c).
 * Private to proxy/core/session*.c. */
#ifndef STP_SESSION_SPOOL_H
#define STP_SESSION_SPOOL_H

#include "smtp-tls-proxy/session.h"

/* Is this upstream outcome temporary for the transaction's route? r: the
 * reply, or NULL for a connection failure `why`. */
bool session_spool_temporary(const session *s, const smtp_reply *r, upstream_fail why);
/* The transaction's route spools and the owner implements the copy. */
bool session_spool_route(const session *s);
/* Switch the transaction to spool mode when the route spools, the outcome
 * is temporary and the spool has room (the upstream is let go). True when
 * the transaction is (now) in spool mode. */
bool session_spool_switch(session *s, const smtp_reply *r, upstream_fail why);
/* The upstream went away while the device sends a message that has a
 * copy: the copy takes the rest, and the spool the message. */
void session_spool_lost_in_data(session *s, upstream_fail why);
/* Keep an accepted recipient (spool routes only). */
void session_spool_keep_rcpt(session *s, const char *addr);
/* RCPT in spool mode: accepted locally. */
void session_spool_accept_rcpt(session *s);
/* At our 354: start the copy when the route spools and there is room. */
void session_spool_copy_begin(session *s);
/* End of data with a copy: commit it (r or why: the failure that made it
 * necessary, unless already recorded) and wait for session_spooled. */
void session_spool_commit(session *s, const smtp_reply *r, upstream_fail why);
/* The owner's answer to the commit. */
void session_spool_apply(session *s, bool ok, const char *text);

#endif
