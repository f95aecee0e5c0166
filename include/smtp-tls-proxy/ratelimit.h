/* ratelimit.h - token buckets, alone and in a bounded per-key table.
 *
 * Owns: the arithmetic of "N per period" limits (per listener, per client
 * address). Guarantees: pure, time comes in as plain milliseconds (no
 * clock is read here); integer arithmetic, so the wait returned is exact:
 * a take at now + wait succeeds, one at now + wait - 1 does not; the table
 * allocates its fixed capacity once and never grows.
 *
 * A bucket holds up to `count` tokens and refills continuously at
 * count/period. Internally a token is `period_ms` units of credit and the
 * refill is `count` units per millisecond, which keeps everything in
 * integers; stp_parse_rate (config.h) refuses rates where count * period_ms does not
 * fit (RATELIMIT_MAX_CREDIT), and ratelimit_take shortens the period of such a rate
 * given directly, which only makes it more permissive.
 */
#ifndef STP_RATELIMIT_H
#define STP_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_MAX_CREDIT (UINT64_C(1) << 62)
#define RATELIMIT_KEY_MAX 64 /* key bytes kept, NUL included; longer keys share a bucket */
#define RATELIMIT_TABLE_DEFAULT_CAPACITY 4096

typedef struct ratelimit_bucket {
  uint64_t credit; /* tokens * period_ms; UINT64_MAX right after ratelimit_init ("full") */
  uint64_t last_ms;
} ratelimit_bucket;

/* A full bucket (whatever count and period it is later used with). */
void ratelimit_init(ratelimit_bucket *b, uint64_t now_ms);
/* Take one token: 0 when taken, else the milliseconds until one will be
 * available (>= 1); nothing is taken then. count == 0 or period_ms == 0
 * means no limit (always 0). A clock that goes backwards refills nothing. */
uint64_t ratelimit_take(ratelimit_bucket *b, uint32_t count, uint64_t period_ms, uint64_t now_ms);
/* True when the bucket would hold `count` tokens at now_ms. */
/* Like ratelimit_take but takes nothing: 0 when a token is there, else the wait. */
uint64_t ratelimit_peek(const ratelimit_bucket *b, uint32_t count, uint64_t period_ms,
                        uint64_t now_ms);
bool ratelimit_full(const ratelimit_bucket *b, uint32_t count, uint64_t period_ms, uint64_t now_ms);

/* Buckets by key (client address text). When all `capacity` entries are
 * in use, a new key evicts an entry that is full anyway (forgetting it
 * loses nothing) among the RATELIMIT_EVICT_SCAN least recently used, else the
 * least recently used one. */
#define RATELIMIT_EVICT_SCAN 8

typedef struct ratelimit_entry {
  char key[RATELIMIT_KEY_MAX];
  uint32_t hash;
  uint32_t chain;        /* next entry in the same hash slot */
  uint32_t newer, older; /* recency list */
  ratelimit_bucket b;
} ratelimit_entry;

typedef struct ratelimit_table {
  ratelimit_entry *e;
  uint32_t *slots; /* nslots heads of hash chains */
  uint32_t nslots, capacity, used;
  uint32_t newest, oldest;
  uint64_t evictions;
} ratelimit_table;

/* capacity 0: RATELIMIT_TABLE_DEFAULT_CAPACITY. Allocates once. */
void ratelimit_table_init(ratelimit_table *t, uint32_t capacity);
void ratelimit_table_free(ratelimit_table *t);
/* ratelimit_take on the bucket of `key` (a new key starts full). */
uint64_t ratelimit_table_take(ratelimit_table *t, const char *key, uint32_t count,
                              uint64_t period_ms, uint64_t now_ms);
/* The wait ratelimit_table_take would report, without taking or adding anything
 * (an unknown key has a full bucket: 0). */
uint64_t ratelimit_table_peek(const ratelimit_table *t, const char *key, uint32_t count,
                              uint64_t period_ms, uint64_t now_ms);
static inline uint32_t ratelimit_table_size(const ratelimit_table *t) {
  return t->used;
}

#endif
