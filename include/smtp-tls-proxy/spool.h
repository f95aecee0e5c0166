/* spool.h - the spool's on-disk formats and its policies, pure.
 *
 * Owns: the text envelope at the head of each message file, the small
 * delivery-state file next to it, spool ids, the retry schedule, expiry,
 * the bookkeeping of one delivery attempt's per-recipient outcomes, and
 * the line `queue list` prints. Guarantees: no I/O; a parser accepts only
 * what the formatter writes (version, every field, sizes, hex), so a torn
 * or foreign file is refused, never half-read; values that could break a
 * line (CR, LF, NUL) are refused by the formatter rather than written.
 * proxy/net/spool.c does the files; see README "When the upstream is down".
 *
 * Message file: "<header>\n<body>", the header being lines "key: value":
 *   smtp-tls-proxy-spool 1
 *   id: 0189c2f3a4b5c6d7
 *   kind: message | notice       (a notice never causes another notice)
 *   created: <ms since the epoch>
 *   route: NAME / listener: NAME / client: IP
 *   from: ADDR                   (the device's sender; empty for <>)
 *   upstream-from: ADDR          (after the route's rewrite; empty for <>)
 *   body: none | 7bit | 8bitmime / smtputf8: 0 | 1
 *   ret: full | hdrs             (DSN, RFC 3461: only when the device gave
 *   envid: XTEXT                  them; a file without them still parses)
 *   reason: TEXT                 (why it was spooled: SPOOL_REASON_MAX
 *                                 characters, padded with spaces)
 *   rcpt: ADDR                   (one line per recipient, in order,
 *   notify: NEVER | SUCCESS,...   each followed by its DSN NOTIFY and
 *   orcpt: TYPE;XTEXT             ORCPT when the device gave them)
 *   size: 20 digits / sha256: 64 hex (of the body)
 * Reason, size and hash have a fixed width, so they are filled in at the
 * commit, once the body is complete and the upstream's last word known,
 * then an empty line and the body exactly as it goes upstream: framed,
 * dot-stuffed, header-rewritten, without the final dot. A message is one
 * immutable file: no state file is written until its first attempt.
 */
#ifndef STP_SPOOL_H
#define STP_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/smtp.h"

#define SPOOL_ID_LEN 16
#define SPOOL_HEADER_MAX (512 * 1024) /* 1000 recipients of 320 octets fit */
#define SPOOL_STATE_MAX 8192
#define SPOOL_REASON_MAX 240
#define SPOOL_SIZE_DIGITS 20
#define SPOOL_HASH_HEX 64

typedef enum { SPOOL_KIND_MESSAGE = 0, SPOOL_KIND_NOTICE } spool_kind;

/* A message's envelope. Strings are borrowed when formatting; a parsed
 * envelope owns them (spool_env_free). */
typedef struct spool_env {
  char id[SPOOL_ID_LEN + 1];
  spool_kind kind;
  uint64_t created_ms;
  const char *route, *listener, *client;
  const char *from;    /* "" for <> */
  const char *up_from; /* "" for <> */
  smtp_body body;
  bool smtputf8;
  const char *reason;
  const char *const *rcpts;
  size_t n_rcpts;
  /* DSN requests (RFC 3461), passed on at delivery when the upstream
   * offers DSN and honoured by our own failure notice. */
  smtp_ret ret;
  const char *envid;        /* xtext as the device sent it; NULL or "": none */
  const unsigned *notify;   /* per recipient SMTP_NOTIFY_* bits; NULL: none */
  const char *const *orcpt; /* per recipient "type;xtext"; NULL or "": none */
  uint64_t size;
  uint8_t sha256[32];
  char *mem_; /* parsed: the owned text */
} spool_env;

/* Where the fixed-width fields sit in a formatted header. */
typedef struct spool_env_offsets {
  size_t size, hash, reason;
} spool_env_offsets;

/* Formats the header (with its empty line) into a malloc'd buffer; *len
 * gets its length, *off where the fixed-width fields sit. NULL when a
 * value would break the format (CR, LF or NUL, a bad id) or there are no
 * recipients. */
char *spool_env_format(const spool_env *e, size_t *len, spool_env_offsets *off);
/* The fixed-width texts of size, hash and reason, for the offsets above. */
void spool_env_size_text(uint64_t size, char out[SPOOL_SIZE_DIGITS]);
void spool_env_hash_text(const uint8_t sha256[32], char out[SPOOL_HASH_HEX]);
void spool_env_reason_text(const char *reason, char out[SPOOL_REASON_MAX]);
/* Parses a header from p[0..n). Returns 0 and *hdr_len (the body starts
 * there), STP_EAGAIN when no end of header is in p (and n is below
 * SPOOL_HEADER_MAX), or STP_ESYNTAX. */
int spool_env_parse(const char *p, size_t n, spool_env *out, size_t *hdr_len);
void spool_env_free(spool_env *e);

/* Why a message is held. */
typedef enum { SPOOL_HELD_NO = 0, SPOOL_HELD_ADMIN, SPOOL_HELD_ROUTE } spool_held;

/* The mutable delivery state (file "<id>.state", replaced atomically). */
typedef struct spool_state {
  unsigned attempts; /* delivery attempts from the spool so far */
  uint64_t next_ms;  /* wall clock of the next attempt */
  spool_held held;
  char last[SPOOL_REASON_MAX + 1]; /* the last reply or failure */
  bool *done;                      /* per recipient: delivered or failed */
  size_t n_rcpts;
} spool_state;

/* A fresh state for a message just spooled: first retry after retry[0]. */
void spool_state_init(spool_state *st, size_t n_rcpts, const stp_spool_cfg *cfg,
                      uint64_t created_ms, const char *reason);
void spool_state_free(spool_state *st);
/* The text of st in a malloc'd buffer (*len). */
char *spool_state_format(const spool_state *st, size_t *len);
/* Parses a state for a message of n_rcpts recipients. 0 or STP_ESYNTAX. */
int spool_state_parse(const char *p, size_t n, size_t n_rcpts, spool_state *out);
size_t spool_state_pending(const spool_state *st);

/* ---- ids ---------------------------------------------------------------- */
/* 16 lowercase hex digits: 11 of the time in ms, 5 of `rnd`. They sort by
 * creation time and are safe as file names. */
void spool_id_make(char out[SPOOL_ID_LEN + 1], uint64_t now_ms, uint32_t rnd);
bool spool_id_valid(const char *s);

/* ---- policy ------------------------------------------------------------- */
/* The wait before the next attempt after `attempts` failed spool
 * attempts: retry[attempts], then the last interval again and again. */
uint64_t spool_retry_delay(const stp_spool_cfg *cfg, unsigned attempts);
bool spool_expired(const stp_spool_cfg *cfg, uint64_t created_ms, uint64_t now_ms);

/* One recipient's outcome in a delivery attempt. */
typedef enum {
  SPOOL_RCPT_SKIP = 0, /* already done before this attempt */
  SPOOL_RCPT_OK,       /* the upstream took it (2xx to the final dot) */
  SPOOL_RCPT_TEMP,     /* 4xx or a lost connection: retry */
  SPOOL_RCPT_PERM,     /* 5xx: a failure notice */
} spool_rcpt_result;

/* Applies an attempt's outcomes to st: done marks, attempts, the next
 * try (now + spool_retry_delay) and `last`. Returns true when every
 * recipient is done (the message can go). */
bool spool_state_after_attempt(spool_state *st, const spool_rcpt_result *res,
                               const stp_spool_cfg *cfg, uint64_t now_ms, const char *last);

/* "45s", "12m", "3h", "2d" (rounded down), for list lines and logs. */
void spool_fmt_age(uint64_t ms, char *out, size_t cap);
/* One `queue list` line (no newline): "ID age=.. size=.. from=<..> to=<..>,..
 * route=.. attempts=N next=..|now|held last=TEXT". */
void spool_list_line(const spool_env *e, const spool_state *st, uint64_t now_ms, char *out,
                     size_t cap);

#endif
