/* uphealth.h - what the proxy knows about each upstream's health.
 *
 * Owns: one record per configured upstream: up/down, the last success and
 * failure, the last error's reason and hint, and the OAuth token lifetimes.
 * Guarantees: pure; fed only by the log events (stp_log_observe), so it
 * sees exactly what the log says, from live traffic, the spool, probes and
 * token fetches alike; never holds a secret (only reason words, the
 * provider's words and hints, which the log shows anyway). The set of
 * upstreams follows the configuration (uphealth_reset); an upstream that
 * keeps its name across a reload keeps its record.
 */
#ifndef STP_UPHEALTH_H
#define STP_UPHEALTH_H

#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/config.h"
#include "smtp-tls-proxy/log.h"

typedef enum { UPH_UNKNOWN = 0, UPH_UP, UPH_DOWN } uph_state;
typedef struct {
  uph_state state;
  int64_t last_success;         /* unix seconds, 0 = never */
  int64_t last_failure;         /* unix seconds, 0 = never */
  int64_t down_since;           /* first failure of the current run, 0 when up/unknown */
  char last_error[256];         /* reason word and the provider's words; never secrets */
  char hint[256];               /* the fix, when the provider table knows one */
  int64_t token_expiry;         /* the current OAuth access token, 0 = none/unknown */
  int64_t refresh_token_expiry; /* 0 = unknown */
  char last_reason[64];         /* the reason word alone (last_error starts with it) */
  unsigned failures;            /* failures in the current run, 0 when up/unknown */
  int credentials_refused;      /* the last failure was a refusal of our credentials */
} uph_status;

/* 0, or -1 for an unknown name (out untouched). */
int uphealth_get(const char *upstream, uph_status *out);
const char *uph_state_name(uph_state s); /* "unknown", "up", "down" */

/* The upstreams of cfg (NULL: none). Records of names still present are
 * kept; the others are dropped; new names start UPH_UNKNOWN. */
void uphealth_reset(const stp_config *cfg);
/* Number of upstreams and the i-th name (NULL past the end), in config order. */
size_t uphealth_count(void);
const char *uphealth_name(size_t i);

/* The observer (stp_log_observer_fn); ctx unused. uphealth_install
 * registers it once (0, or -1 when the observer table is full). */
void uphealth_observe(void *ctx, int level, const char *sid, const char *event, const stp_kv *kv,
                      size_t n);
int uphealth_install(void);

/* The clock (unix seconds); NULL restores time(). For tests. */
void uphealth_set_clock(int64_t (*now)(void));
int64_t uphealth_now(void);

#endif
