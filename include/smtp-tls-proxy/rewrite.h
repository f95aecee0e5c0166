/* rewrite.h - streaming From:/Reply-To:/Sender: header rewriting.
 *
 * Owns: the message header block of a rewritten message, i.e. the only
 * bytes of a message the proxy changes (routes with rewrite.header_from).
 * Input is what data.c emits: CRLF-framed and dot-stuffed.
 *
 * Guarantees: pure (no I/O); the output for an input split at any byte
 * offsets equals the output for the whole input; only the header block is
 * held, in at most `max_header` bytes (header lines and the empty line that
 * ends them), and it is released as soon as it has been emitted; body
 * bytes go to emit in the call that brought them, never copied. Output
 * stays CRLF-framed and dot-stuffed: the lines added never start with '.'.
 *
 * Rules (SPEC "Rewrite"):
 *  - every From: field (name case-insensitive, "From :" too, with its
 *    folded continuation lines) is dropped and one "From: <header_from>"
 *    takes the place of the first; without any From: it is appended at the
 *    end of the header block;
 *  - the first From:'s value, unfolded (CRLFs removed, outer white space
 *    trimmed), goes into "Reply-To: <value>" right after the new From:,
 *    unless the message has a Reply-To: field, the value is empty, or its
 *    address already is the new From's address. A value that would make
 *    the line longer than 998 octets keeps its original folding instead;
 *  - a Sender: field is dropped unless its address equals the new From's
 *    address (ASCII case-insensitive);
 *  - every other line keeps its place and bytes, stuffed lines ("..x")
 *    included.
 * The header block ends at the first empty line, or at the first line that
 * cannot be a header field (no "name:" and not a continuation, e.g. a body
 * sent without headers); in the second case an empty line is inserted
 * before that line so the added fields cannot run into the body.
 */
#ifndef STP_REWRITE_H
#define STP_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp-tls-proxy/data.h"

#define REWRITE_DEFAULT_MAX (64u * 1024u)

typedef struct rewrite_ctx {
  char *header_from; /* owned copy of the configured value */
  size_t from_len;
  char *from_addr; /* its address ("a@b"), owned */
  size_t max_header;
  char *buf; /* the held header block; NULL once emitted */
  size_t len, cap;
  size_t line_start;   /* offset in buf of the line being read */
  unsigned char state; /* where in that line we are, see rewrite.c */
  bool in_body;        /* header block emitted: bytes pass straight through */
  bool failed;         /* STP_ETOOLONG was returned; nothing more is emitted */
  /* what was done, for the log line */
  bool from_replaced; /* the message had a From: (all of them replaced) */
  bool from_added;    /* it had none: one was added */
  bool reply_to_added;
  bool sender_removed;
} rewrite_ctx;

/* header_from: e.g. "Office Scanner <scanner@example.com>" (copied).
 * max_header: 0 means REWRITE_DEFAULT_MAX. Returns STP_EINVAL (and
 * leaves *h safe to free) when header_from is NULL, empty or contains a
 * control character other than HTAB: a CR or LF would inject lines. */
int rewrite_init(rewrite_ctx *h, const char *header_from, size_t max_header);
void rewrite_free(rewrite_ctx *h);

/* Feed message bytes (data.c output). Returns 0, or STP_ETOOLONG when the
 * header block does not fit in max_header: the caller answers 552 5.3.4
 * (after draining the DATA) and sends no final dot. Once it has failed it
 * keeps returning STP_ETOOLONG and emits nothing. */
int rewrite_feed(rewrite_ctx *h, const char *p, size_t n, data_emit_fn emit, void *ctx);

/* End of message: when no line ended the header block, it is rewritten
 * and emitted now (an unterminated last header line gets its CRLF).
 * Returns 0, or STP_ETOOLONG if the rewrite_ctx had failed. */
int rewrite_finish(rewrite_ctx *h, data_emit_fn emit, void *ctx);

#endif
