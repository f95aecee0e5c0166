/* smtp.h - pure SMTP syntax: bounded line reader, command lines, MAIL/RCPT
 * arguments and addresses, multi-line replies, EHLO capabilities.
 *
 * Owns: every decision about what bytes mean in SMTP command/reply mode.
 * Guarantees: no I/O, no allocation after init, every input bounded
 * (commands 512 octets incl. CRLF, AUTH continuation lines 12288, reply
 * lines 512 and replies at most SMTP_REPLY_MAX bytes of text).
 */
#ifndef STP_SMTP_H
#define STP_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_CMD_MAX 512         /* RFC 5321 4.5.3.1.4, including CRLF */
#define SMTP_AUTH_LINE_MAX 12288 /* RFC 4954 4 */
#define SMTP_ADDR_MAX 320        /* 64 local + @ + 255 domain */
#define SMTP_REPLY_MAX 4096      /* total text kept of one (multi-line) reply */

/* ---- bounded line reader ------------------------------------------------
 * Splits a byte stream into lines. A line ends at LF; a CR before that LF is
 * stripped and reported in `crlf`. A line longer than `max` (counting its
 * terminator) is reported once as STP_ETOOLONG when its LF finally arrives,
 * its bytes discarded meanwhile, so an endless line costs no memory. */
typedef struct smtp_linereader {
  char *buf;
  size_t len;
  size_t max;    /* current limit, may be changed between lines */
  size_t cap;    /* allocated size (>= largest max used) */
  bool overflow; /* discarding an over-long line */
} smtp_linereader;

void smtp_lr_init(smtp_linereader *lr, size_t cap);
void smtp_lr_free(smtp_linereader *lr);
/* Consume bytes from data[0..len) until one line is complete or the input
 * is exhausted. *used = bytes consumed. Returns:
 *   1: a line is ready: *line and *line_len (no terminator, NUL-terminated in
 *      place, valid until the next call), *crlf true if it ended in CRLF;
 *   0: need more input (all of data consumed);
 *   STP_ETOOLONG: an over-long line ended (its bytes are gone).
 */
int smtp_lr_feed(smtp_linereader *lr, const char *data, size_t len, size_t *used, const char **line,
                 size_t *line_len, bool *crlf);
/* Bytes held of an incomplete line (for "bytes after 220" / sync checks). */
static inline size_t smtp_lr_pending(const smtp_linereader *lr) {
  return lr->len + (lr->overflow ? 1u : 0u);
}
void smtp_lr_reset(smtp_linereader *lr);

/* ---- commands ----------------------------------------------------------- */
typedef enum {
  SMTP_UNKNOWN = 0,
  SMTP_HELO,
  SMTP_EHLO,
  SMTP_MAIL,
  SMTP_RCPT,
  SMTP_DATA,
  SMTP_RSET,
  SMTP_NOOP,
  SMTP_QUIT,
  SMTP_VRFY,
  SMTP_EXPN,
  SMTP_HELP,
  SMTP_STARTTLS,
  SMTP_AUTH,
  SMTP_BDAT,
} smtp_verb;

typedef struct smtp_cmd {
  smtp_verb verb;
  const char *arg; /* points into the line, after the verb and one space;
                      "" when none. For MAIL/RCPT: after "FROM:"/"TO:" */
  size_t arg_len;
} smtp_cmd;

/* Case-insensitive verb. MAIL needs "FROM:" and RCPT "TO:" (spaces allowed
 * around the colon, as legacy devices send "MAIL FROM: <a@b>"); otherwise
 * STP_ESYNTAX. Unknown verbs give verb SMTP_UNKNOWN and return 0. */
int smtp_parse_command(const char *line, size_t len, smtp_cmd *out);
const char *smtp_verb_name(smtp_verb v);

/* ---- addresses and MAIL/RCPT parameters ----------------------------------
 * Accepts "<a@b>", "<>", "a@b" (no brackets, legacy), leading spaces,
 * source routes "<@x,@y:a@b>" (stripped, RFC 5321 4.1.1.3 / C), quoted
 * local parts ("john doe"@x). Rejects (STP_EADDR) '@', '%' or '!' anywhere
 * in the local part, quoted (also backslash-escaped) or not: relay hacks
 * that a next hop resolves even inside quotes. Also empty local part or
 * domain, control characters, addresses over SMTP_ADDR_MAX. 8-bit UTF-8 is allowed only
 * when `utf8` is true (SMTPUTF8 given on MAIL). The domain is lower-cased
 * in the canonical form; the local part is kept as written. */
typedef struct smtp_path {
  char addr[SMTP_ADDR_MAX + 1]; /* canonical "local@domain", "" for <> */
  bool null_path;               /* "<>" */
} smtp_path;

typedef enum { SMTP_BODY_NONE = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME } smtp_body;

/* DSN (RFC 3461): RET= on MAIL. */
typedef enum { SMTP_RET_NONE = 0, SMTP_RET_FULL, SMTP_RET_HDRS } smtp_ret;
#define SMTP_ENVID_MAX 100          /* RFC 3461 4.4, decoded */
#define SMTP_ORCPT_MAX 500          /* RFC 3461 4.2, decoded */
#define SMTP_XTEXT_MAX(n) (3 * (n)) /* "+XX" per decoded octet at most */

typedef struct smtp_mail_args {
  smtp_path from;
  bool has_size;
  uint64_t size;
  smtp_body body;
  bool smtputf8;
  smtp_ret ret;
  char envid[SMTP_XTEXT_MAX(SMTP_ENVID_MAX) + 1]; /* xtext as sent; "" for none */
} smtp_mail_args;

/* DSN (RFC 3461) parameters of one RCPT. */
#define SMTP_NOTIFY_NEVER 0x1u
#define SMTP_NOTIFY_SUCCESS 0x2u
#define SMTP_NOTIFY_FAILURE 0x4u
#define SMTP_NOTIFY_DELAY 0x8u
typedef struct smtp_rcpt_dsn {
  unsigned notify; /* SMTP_NOTIFY_* bits; 0 for none */
  /* "addr-type;xtext" as sent, e.g. "rfc822;a+2Bb@example.com"; "" for none */
  char orcpt[64 + 1 + SMTP_XTEXT_MAX(SMTP_ORCPT_MAX) + 1];
} smtp_rcpt_dsn;

/* arg: as given in smtp_cmd.arg for MAIL (after "FROM:").
 * Returns 0, STP_EADDR (bad address -> 553 5.1.7 for MAIL, 553 5.1.3 for RCPT),
 * STP_EPARAM (unknown or malformed parameter -> 555 5.5.4),
 * STP_ESYNTAX (-> 501 5.5.4). */
int smtp_parse_mail(const char *arg, size_t len, smtp_mail_args *out);
/* For RCPT: "<>" is not allowed (STP_EADDR); parameters other than DSN's
 * NOTIFY and ORCPT are STP_EPARAM. utf8 from the MAIL. dsn may be NULL
 * (the parameters are still checked). */
int smtp_parse_rcpt_dsn(const char *arg, size_t len, bool utf8, smtp_path *out, smtp_rcpt_dsn *dsn);
int smtp_parse_rcpt(const char *arg, size_t len, bool utf8, smtp_path *out);
/* RFC 3461 4: xtext, with at most `max` octets once decoded (hexchars "+XX"
 * in upper case, no '+' or '=' otherwise, printable ASCII only). */
bool smtp_xtext_valid(const char *s, size_t n, size_t max);
/* The NOTIFY value for bits ("NEVER" or "SUCCESS,FAILURE,DELAY" in that
 * order) into buf; returns buf. */
const char *smtp_notify_text(unsigned notify, char *buf, size_t cap);
/* Parse just a path (used by both); *end = index after the path. */
int smtp_parse_path(const char *s, size_t len, bool utf8, smtp_path *out, size_t *end);
/* The domain of a parsed path ("" for <>): after the last '@' (the parser
 * allows no other, but splitting at the last one stays right regardless). */
const char *smtp_path_domain(const smtp_path *p);

/* ---- replies (upstream side) --------------------------------------------
 * Feed reply lines one by one (without CRLF). Handles "250-a" continuation
 * lines, requires the same code on every line, and keeps up to
 * SMTP_REPLY_MAX bytes of text (lines joined with '\n', codes removed;
 * excess text is dropped, not an error). */
typedef struct smtp_reply {
  int code;                      /* 200..599 */
  char text[SMTP_REPLY_MAX + 1]; /* lines joined by '\n', without codes */
  size_t text_len;
  unsigned lines;
} smtp_reply;

/* Returns 1 when the reply is complete, 0 when more lines are needed,
 * STP_ESYNTAX for a malformed line (no 3-digit code, code outside 2xx-5xx,
 * separator not ' ', '-' or end, code changed mid-reply, more than 100
 * lines). The caller zeroes *r before the first line of each reply. */
int smtp_reply_feed(smtp_reply *r, const char *line, size_t len);
/* Enhanced status code at the start of the first line ("2.1.0"), if any:
 * returns its length (5..9) or 0. */
size_t smtp_reply_enhanced(const smtp_reply *r);

/* ---- EHLO capabilities --------------------------------------------------- */
#define SMTP_AUTH_PLAIN 0x1u
#define SMTP_AUTH_LOGIN 0x2u
#define SMTP_AUTH_XOAUTH2 0x4u
#define SMTP_AUTH_CRAM_MD5 0x8u

typedef struct smtp_caps {
  bool starttls, pipelining, eightbitmime, smtputf8, enhancedstatuscodes, dsn;
  bool has_size;
  uint64_t size; /* 0 = no limit announced */
  unsigned auth; /* SMTP_AUTH_* bits; "AUTH=PLAIN LOGIN" legacy form too */
} smtp_caps;

/* From a complete 250 reply to EHLO (first line is the greeting name). */
void smtp_caps_parse(const smtp_reply *r, smtp_caps *out);

#endif
