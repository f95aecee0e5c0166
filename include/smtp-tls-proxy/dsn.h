/* dsn.h - the failure notice for a spooled message that could not be
 * delivered (RFC 3464 delivery status notification), pure.
 *
 * Owns: the notice's text: a multipart/report; report-type=delivery-status
 * with a text/plain explanation, the message/delivery-status part
 * (Reporting-MTA, Arrival-Date; per recipient Final-Recipient, Action:
 * failed, Status, Diagnostic-Code: smtp; <the upstream's reply>) and the
 * original header block as text/rfc822-headers. Guarantees: CRLF lines of
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
} dsn_input;

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
