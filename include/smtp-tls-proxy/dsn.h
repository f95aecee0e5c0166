/* dsn.h - the failure notice for a spooled message that could not be
 * delivered (RFC 3464 delivery status notification; RFC 6533 when an
 * address is not ASCII), pure.
 *
 * Owns: the notice's text: a multipart/report; report-type=delivery-status
 * with a text/plain explanation, the message/delivery-status part
 * (Reporting-MTA, Arrival-Date; per recipient Final-Recipient, Action:
 * failed, Status, Diagnostic-Code: smtp; <the upstream's reply>; with the
 * device's DSN requests, Original-Envelope-Id and Original-Recipient) and
 * the original header block as text/rfc822-headers (headers only, which
 * is what RET=HDRS asks; RET=FULL gets them too). Guarantees: CRLF lines of
 * at most 998 octets (long replies are folded), no bare CR or LF from the
 * inputs, a boundary that occurs nowhere in the parts, bounded size
 * (DSN_HEADERS_MAX of original headers, at most DSN_MAX_RCPTS recipients
 * listed). The text is not dot-stuffed; the caller frames it.
 */
#ifndef STP_DSN_H
#define STP_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DSN_HEADERS_MAX (32 * 1024)
#define DSN_MAX_RCPTS 1000

typedef struct dsn_rcpt {
  const char *addr;  /* the original recipient */
  const char *reply; /* the upstream's reply ("550 5.1.1 ..."), or the last failure */
  unsigned notify;   /* the device's NOTIFY (SMTP_NOTIFY_* bits), 0: none */
  const char *orcpt; /* the device's ORCPT "type;xtext", NULL: none */
} dsn_rcpt;

typedef struct dsn_input {
  const char *reporting_mta; /* our hostname */
  const char *to;            /* who gets this notice */
  const char *orig_from;     /* the original sender, "" for <> */
  const char *spool_id;
  uint64_t arrival_ms, now_ms; /* wall clock */
  bool expired;                /* max_age passed (else: a 5xx) */
  const char *max_age;         /* "5d", for the explanation */
  const dsn_rcpt *rcpts;
  size_t n_rcpts;
  const char *headers; /* the original header block, CRLF lines, unstuffed */
  size_t headers_len;
  const char *envid; /* the device's ENVID (xtext), NULL: none */
} dsn_input;

/* Whether the notice is international (RFC 6533): an address, reply or
 * header of it is not ASCII. Then the status part is
 * message/global-delivery-status, UTF-8 addresses are "utf-8;" with
 * RFC 6533's unitext escapes, the headers are message/global-headers,
 * every 8-bit part declares Content-Transfer-Encoding: 8bit, and the
 * notice must go with SMTPUTF8 (RFC 6531). */
bool dsn_is_global(const dsn_input *in);

/* Whether a recipient's sender wants a failure notice (RFC 3461 4.1: no
 * NOTIFY, or one that lists FAILURE; never for NOTIFY=NEVER). */
bool dsn_wants_failure(unsigned notify);

/* The notice, CRLF lines, in a malloc'd buffer of *len bytes. */
char *dsn_build(const dsn_input *in, size_t *len);

/* The Status of a recipient: the enhanced code of `reply` when it has one
 * of the failure's class, else 5.0.0 (a 5xx) or 4.4.7 (expired). */
void dsn_status(const char *reply, bool expired, char out[16]);

/* The header block at the start of a stored (dot-stuffed, CRLF) body: up
 * to and including the empty line, at most DSN_HEADERS_MAX, cut at a line
 * end; leading dots unstuffed. Writes into out (cap >= DSN_HEADERS_MAX)
 * and returns the length. */
size_t dsn_header_block(const char *body, size_t n, char *out, size_t cap);

/* RFC 5322 date-time in UTC: "Tue, 01 Dec 2026 10:00:00 +0000". */
void dsn_date(uint64_t ms, char *out, size_t cap);

#endif
