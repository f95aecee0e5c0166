/* apimap.h - what an HTTP mail API's answer means for the device: one
 * table from (API, step, HTTP status, the API's error code) to an SMTP
 * reply, an action, and a hint for the log. Pure.
 *
 * Owns: the table and the reading of the APIs' answers (Graph's
 * {"error": {"code", "message"}} and request-id header, Gmail's {"id"} and
 * {"error": {"errors": [{"reason"}], "status"}}), Retry-After (seconds or
 * an HTTP date). Guarantees: every answer maps to exactly one row (the
 * last rows catch everything); a 2xx is 250 only for the step that sends;
 * 401 asks for one token refresh, a second 401 is 4xx; 429 and 5xx are
 * 4xx with the wait Retry-After asked for (bounded); Graph's 404 on a step
 * after the draft exists (eventual consistency, an expired upload), 409,
 * 412 and 423 are 4xx marked `retry` (the step once more first); other
 * 4xx are 5xx
 * carrying the API's error code; the reply text is one line of printable
 * ASCII, the API's own words cut to a bound. The provider-fidelity table
 * of SMTP replies (provider.c) is its sibling for SMTP upstreams.
 */
#ifndef STP_APIMAP_H
#define STP_APIMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "smtp-tls-proxy/config.h"

typedef enum {
  API_STEP_SEND = 0,   /* Graph sendMail, Gmail messages/send: accepted means sent */
  API_STEP_DRAFT,      /* Graph: create the draft */
  API_STEP_ATTACH,     /* Graph: a small attachment, or createUploadSession */
  API_STEP_UPLOAD,     /* Graph: one chunk PUT to the upload URL */
  API_STEP_SEND_DRAFT, /* Graph: send the draft: accepted means sent */
} api_step;

typedef enum {
  APIMAP_NEXT = 0, /* a 2xx of an intermediate step: go on */
  APIMAP_SENT,     /* the API accepted the message: 250 */
  APIMAP_REFRESH,  /* 401: fetch a new token and send again, once */
  APIMAP_DEFER,    /* 4xx to the device (and the upstream backs off) */
  APIMAP_FAIL,     /* 5xx to the device */
} apimap_action;

#define APIMAP_RETRY_MAX_MS (3600u * 1000u) /* a Retry-After is honoured up to an hour */

typedef struct apimap_in {
  stp_up_kind kind;
  api_step step;
  int status;       /* HTTP status */
  const char *body; /* the response body (may be NULL) */
  size_t body_len;
  const char *request_id;  /* Graph's request-id header (may be NULL) */
  const char *retry_after; /* the Retry-After header (may be NULL) */
  bool token_refreshed;    /* a 401 was already answered with a new token */
  int64_t now_s;           /* for a Retry-After given as a date */
} apimap_in;

typedef struct apimap_out {
  apimap_action action;
  int code;          /* SMTP reply code (0 for NEXT and REFRESH) */
  char text[400];    /* the reply text: "5.7.60 ..." (one line) */
  char api_code[80]; /* the API's error code, "" when none */
  char api_message[200];
  char id[160];       /* request id (Graph) or message id (Gmail), "" if none */
  const char *reason; /* one word for the log: "throttled", "send-as-denied", ... */
  const char *hint;   /* what an admin does about it, or NULL */
  uint64_t retry_ms;  /* DEFER: what Retry-After asked (0: none) */
  bool retry;         /* DEFER: temporary (eventual consistency, 409, 412, 423): the
                         step is tried once more after a short pause first */
} apimap_out;

void apimap_answer(const apimap_in *in, apimap_out *out);

/* Retry-After: delta-seconds or an IMF-fixdate; milliseconds from now_s,
 * bounded by APIMAP_RETRY_MAX_MS; 0 when absent or unreadable. */
uint64_t apimap_retry_after(const char *v, int64_t now_s);

/* The API's error code and message from an error body; false when the
 * body is not one. */
bool apimap_error(stp_up_kind kind, const char *body, size_t len, char *code, size_t codecap,
                  char *msg, size_t msgcap);

/* Printable ASCII only (others become '?'), cut to cap - 1. */
void apimap_clean(const char *in, size_t n, char *out, size_t cap);

#endif
