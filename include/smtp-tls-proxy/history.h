/* history.h - the delivery history: the last N messages, in memory.
 *
 * Owns: a ring of the last `cap` "message" events (no bodies): time, session
 * id, client, listener, route, upstream, both senders, recipients, size,
 * result, the reply, duration and spool id. Fed only by the log observer
 * (history_observe, registered with stp_log_observe): what the log line of
 * a message says is what the history keeps, never a second account.
 * Guarantees: pure (time comes from the caller's clock function); every
 * field is capped (HISTORY_*_MAX bytes, cut on a UTF-8 boundary), so one
 * entry never exceeds HISTORY_ENTRY_MAX bytes and the ring at most
 * cap * HISTORY_ENTRY_MAX; an entry is one allocation of its real size.
 */
#ifndef STP_HISTORY_H
#define STP_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/log.h"
#include "smtp-tls-proxy/util.h"

#define HISTORY_DEFAULT 1000
#define HISTORY_MAX 100000
#define HISTORY_NAME_MAX 64   /* sid, client, listener, route, upstream, spool id */
#define HISTORY_ADDR_MAX 256  /* from, from_rewritten */
#define HISTORY_RCPTS_MAX 512 /* the recipient list as the session wrote it */
#define HISTORY_REPLY_MAX 256

typedef enum {
  HR_DELIVERED = 0,
  HR_REJECTED,
  HR_DEFERRED,
  HR_SPOOLED,
  HR_ABORTED,
  HR_N
} history_result;

enum {
  HF_SID,
  HF_CLIENT,
  HF_LISTENER,
  HF_ROUTE,
  HF_UPSTREAM,
  HF_FROM,
  HF_FROM_REWRITTEN,
  HF_RCPTS,
  HF_REPLY,
  HF_SPOOL_ID,
  HF_N
};

typedef struct history_entry {
  int64_t time_ms; /* wall clock, ms since the epoch */
  uint64_t size, duration_ms;
  uint32_t n_rcpts;
  uint32_t bytes;     /* of this allocation */
  uint8_t result;     /* history_result */
  uint16_t off[HF_N]; /* each field's offset in text; "" when absent */
  char text[];        /* the fields, NUL-terminated, one after another */
} history_entry;

#define HISTORY_ENTRY_MAX                                                                          \
  (sizeof(history_entry) + 6 * (HISTORY_NAME_MAX + 1) + 2 * (HISTORY_ADDR_MAX + 1) +               \
   (HISTORY_RCPTS_MAX + 1) + (HISTORY_REPLY_MAX + 1))

typedef struct history {
  history_entry **ring;
  size_t cap, head, n; /* head: where the next one goes */
  size_t bytes;        /* of the entries' allocations */
  uint64_t total;      /* messages seen since start */
  int64_t (*clock_ms)(void);
} history;

/* cap 0: HISTORY_DEFAULT. clock_ms NULL: the entries get time 0. */
void history_init(history *h, size_t cap, int64_t (*clock_ms)(void));
void history_free(history *h);
/* A log observer (stp_log_observe(history_observe, h)): keeps "message"
 * events, ignores all others. */
void history_observe(void *h, int level, const char *sid, const char *event, const stp_kv *kv,
                     size_t n);
/* The i-th newest entry (0: the newest), or NULL past the end. */
const history_entry *history_get(const history *h, size_t i);
static inline const char *history_field(const history_entry *e, int f) {
  return e->text + e->off[f];
}
const char *history_result_name(int r);
/* "2026-12-06T21:40:00.123Z" (24 bytes and a NUL). */
void history_time_text(int64_t ms, char out[32]);
/* "delivered" ... -> 0..HR_N-1, or -1. */
int history_result_parse(const char *s, size_t len);

/* The newest `limit` entries (0: all) whose result is `result` (-1: any),
 * as the JSON list SPEC.md gives for GET /api/deliveries. Past the buffer's
 * bound the list ends with the newest entries that fit (always a valid
 * list); STP_EFULL only when not even "[]" fits. */
int history_json(const history *h, size_t limit, int result, stp_buf *out);

#endif
