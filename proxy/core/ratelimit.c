/* ratelimit.c - token buckets and a bounded table of them (see ratelimit.h).
 *
 * Owns: rate arithmetic and the per-key table. Guarantees: pure, no
 * floating point, no allocation after ratelimit_table_init, every lookup bounded
 * by the table's capacity.
 *
 * Credit is kept in units of 1/period_ms of a token, so a refill of
 * `elapsed` ms adds elapsed * count units exactly; elapsed is capped at one
 * period before multiplying (a longer pause fills the bucket anyway), which
 * keeps every product under count * period_ms <= RATELIMIT_MAX_CREDIT.
 */
#include "smtp-tls-proxy/ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/util.h"

#define NIL UINT32_MAX

void ratelimit_init(ratelimit_bucket *b, uint64_t now_ms) {
  b->credit = UINT64_MAX;
  b->last_ms = now_ms;
}

/* The period actually used: shortened so count * period fits. */
static uint64_t eff_period(uint32_t count, uint64_t period_ms) {
  return period_ms > RATELIMIT_MAX_CREDIT / count ? RATELIMIT_MAX_CREDIT / count : period_ms;
}

/* Credit at now_ms, capped at a full bucket. */
static uint64_t credit_at(const ratelimit_bucket *b, uint32_t count, uint64_t period,
                          uint64_t now_ms) {
  uint64_t cap = (uint64_t)count * period;
  uint64_t credit = b->credit < cap ? b->credit : cap;
  if (now_ms > b->last_ms) {
    uint64_t elapsed = now_ms - b->last_ms;
    if (elapsed >= period)
      return cap;
    uint64_t add = elapsed * count;
    credit = credit > cap - add ? cap : credit + add;
  }
  return credit;
}

uint64_t ratelimit_take(ratelimit_bucket *b, uint32_t count, uint64_t period_ms, uint64_t now_ms) {
  if (count == 0 || period_ms == 0)
    return 0;
  uint64_t period = eff_period(count, period_ms);
  b->credit = credit_at(b, count, period, now_ms);
  if (now_ms > b->last_ms)
    b->last_ms = now_ms;
  if (b->credit >= period) {
    b->credit -= period;
    return 0;
  }
  return (period - b->credit + count - 1) / count;
}

uint64_t ratelimit_peek(const ratelimit_bucket *b, uint32_t count, uint64_t period_ms,
                        uint64_t now_ms) {
  if (count == 0 || period_ms == 0)
    return 0;
  uint64_t period = eff_period(count, period_ms);
  uint64_t credit = credit_at(b, count, period, now_ms);
  return credit >= period ? 0 : (period - credit + count - 1) / count;
}

bool ratelimit_full(const ratelimit_bucket *b, uint32_t count, uint64_t period_ms,
                    uint64_t now_ms) {
  if (count == 0 || period_ms == 0)
    return true;
  uint64_t period = eff_period(count, period_ms);
  return credit_at(b, count, period, now_ms) == (uint64_t)count * period;
}

/* ---- table -------------------------------------------------------------- */

/* FNV-1a. Keys are client addresses that passed the listener's `allow`,
 * and a chain can never be longer than the capacity. */
static uint32_t hash_key(const char *k) {
  uint32_t h = 2166136261u;
  for (; *k; k++) {
    h ^= (unsigned char)*k;
    h *= 16777619u;
  }
  return h;
}

void ratelimit_table_init(ratelimit_table *t, uint32_t capacity) {
  memset(t, 0, sizeof *t);
  t->capacity = capacity ? capacity : RATELIMIT_TABLE_DEFAULT_CAPACITY;
  t->nslots = 1;
  while (t->nslots < t->capacity && t->nslots < (UINT32_C(1) << 31))
    t->nslots <<= 1;
  t->e = stp_xcalloc(t->capacity, sizeof *t->e);
  t->slots = stp_xmalloc((size_t)t->nslots * sizeof *t->slots);
  for (uint32_t i = 0; i < t->nslots; i++)
    t->slots[i] = NIL;
  t->newest = t->oldest = NIL;
}

void ratelimit_table_free(ratelimit_table *t) {
  free(t->e);
  free(t->slots);
  memset(t, 0, sizeof *t);
}

static void lru_unlink(ratelimit_table *t, uint32_t i) {
  ratelimit_entry *e = &t->e[i];
  if (e->newer != NIL)
    t->e[e->newer].older = e->older;
  else
    t->newest = e->older;
  if (e->older != NIL)
    t->e[e->older].newer = e->newer;
  else
    t->oldest = e->newer;
}

static void lru_push(ratelimit_table *t, uint32_t i) {
  ratelimit_entry *e = &t->e[i];
  e->newer = NIL;
  e->older = t->newest;
  if (t->newest != NIL)
    t->e[t->newest].newer = i;
  t->newest = i;
  if (t->oldest == NIL)
    t->oldest = i;
}

static void chain_unlink(ratelimit_table *t, uint32_t i) {
  uint32_t *pp = &t->slots[t->e[i].hash & (t->nslots - 1)];
  while (*pp != i)
    pp = &t->e[*pp].chain;
  *pp = t->e[i].chain;
}

static uint32_t pick_victim(const ratelimit_table *t, uint32_t count, uint64_t period_ms,
                            uint64_t now_ms) {
  uint32_t i = t->oldest;
  for (unsigned k = 0; k < RATELIMIT_EVICT_SCAN && i != NIL; k++, i = t->e[i].newer)
    if (ratelimit_full(&t->e[i].b, count, period_ms, now_ms))
      return i;
  return t->oldest;
}

/* The key as stored (cut to RATELIMIT_KEY_MAX - 1 bytes), its hash, and its
 * entry index or NIL. */
static uint32_t find(const ratelimit_table *t, const char *key, char k[RATELIMIT_KEY_MAX],
                     uint32_t *h) {
  size_t n = strnlen(key, RATELIMIT_KEY_MAX - 1);
  memcpy(k, key, n);
  k[n] = '\0';
  *h = hash_key(k);
  uint32_t i;
  for (i = t->slots[*h & (t->nslots - 1)]; i != NIL; i = t->e[i].chain)
    if (t->e[i].hash == *h && strcmp(t->e[i].key, k) == 0)
      break;
  return i;
}

uint64_t ratelimit_table_peek(const ratelimit_table *t, const char *key, uint32_t count,
                              uint64_t period_ms, uint64_t now_ms) {
  char k[RATELIMIT_KEY_MAX];
  uint32_t h;
  uint32_t i = find(t, key, k, &h);
  return i == NIL ? 0 : ratelimit_peek(&t->e[i].b, count, period_ms, now_ms);
}

uint64_t ratelimit_table_take(ratelimit_table *t, const char *key, uint32_t count,
                              uint64_t period_ms, uint64_t now_ms) {
  char k[RATELIMIT_KEY_MAX];
  uint32_t h;
  uint32_t i = find(t, key, k, &h);
  size_t n = strlen(k);
  uint32_t *slot = &t->slots[h & (t->nslots - 1)];
  if (i != NIL) {
    lru_unlink(t, i);
  } else {
    if (t->used < t->capacity) {
      i = t->used++;
    } else {
      i = pick_victim(t, count, period_ms, now_ms);
      lru_unlink(t, i);
      chain_unlink(t, i);
      t->evictions++;
    }
    ratelimit_entry *e = &t->e[i];
    memcpy(e->key, k, n + 1);
    e->hash = h;
    e->chain = *slot;
    *slot = i;
    ratelimit_init(&e->b, now_ms);
  }
  lru_push(t, i);
  return ratelimit_take(&t->e[i].b, count, period_ms, now_ms);
}
