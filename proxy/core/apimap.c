/* apimap.c - the API answer table (see apimap.h).
 *
 * Rows are tried in order; the first whose API, step, status and error
 * code fit decides. Codes are compared without case. The reply text is
 * "<enhanced> <what happened> (<API> <status> <code>: <message>)", so a
 * device's log and the proxy's both carry the API's own words.
 */
#include "smtp-tls-proxy/apimap.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "smtp-tls-proxy/json.h"
#include "smtp-tls-proxy/util.h"

#define ANY_KIND (-1)
#define ANY_STEP (-1)

typedef struct apimap_row {
  int kind; /* stp_up_kind or ANY_KIND */
  int step; /* api_step or ANY_STEP */
  int status_lo, status_hi;
  const char *code; /* the API's error code, NULL: any */
  apimap_action action;
  int smtp;
  const char *enh;
  const char *what;
  const char *reason;
  const char *hint;
} apimap_row;

/* clang-format off */
static const apimap_row rows[] = {
  /* Accepted. */
  {ANY_KIND, API_STEP_SEND, 200, 202, NULL, APIMAP_SENT, 250, "2.0.0", "Ok: accepted by", "sent", NULL},
  {ANY_KIND, API_STEP_SEND_DRAFT, 200, 202, NULL, APIMAP_SENT, 250, "2.0.0", "Ok: accepted by", "sent", NULL},
  {ANY_KIND, ANY_STEP, 200, 299, NULL, APIMAP_NEXT, 0, "", "", "next", NULL},
  /* The token. */
  {ANY_KIND, ANY_STEP, 401, 401, NULL, APIMAP_REFRESH, 0, "", "", "token-refused", NULL},
  /* Throttling and the service's own trouble: the device retries later. */
  {ANY_KIND, ANY_STEP, 429, 429, NULL, APIMAP_DEFER, 451, "4.7.0",
   "Throttled by the mail API, try again later", "throttled",
   "the API asks for fewer requests; the proxy waits as Retry-After says"},
  {STP_UP_GMAIL, ANY_STEP, 403, 403, "rateLimitExceeded", APIMAP_DEFER, 451, "4.7.0",
   "Throttled by the mail API, try again later", "throttled", "Gmail's per-user rate limit"},
  {STP_UP_GMAIL, ANY_STEP, 403, 403, "userRateLimitExceeded", APIMAP_DEFER, 451, "4.7.0",
   "Throttled by the mail API, try again later", "throttled", "Gmail's per-user rate limit"},
  {STP_UP_GMAIL, ANY_STEP, 403, 403, "dailyLimitExceeded", APIMAP_DEFER, 451, "4.7.0",
   "Daily sending limit of the mail API reached, try again later", "quota",
   "Gmail's daily sending limit; it resets within 24 hours"},
  {STP_UP_GMAIL, ANY_STEP, 403, 403, "quotaExceeded", APIMAP_DEFER, 451, "4.7.0",
   "Quota of the mail API exceeded, try again later", "quota",
   "the Google Cloud project's Gmail API quota"},
  {ANY_KIND, ANY_STEP, 408, 408, NULL, APIMAP_DEFER, 451, "4.4.2",
   "The mail API timed out, try again later", "api-timeout", NULL},
  {ANY_KIND, ANY_STEP, 500, 599, NULL, APIMAP_DEFER, 451, "4.3.0",
   "The mail API is unavailable, try again later", "api-unavailable", NULL},
  /* Temporary by nature: the draft created a moment ago is not visible yet
   * (Graph's eventual consistency), an upload session expired or is gone,
   * a conflict, a failed precondition, a locked item. The step is tried
   * once more after a pause, then the device retries (4xx, never 5xx). */
  {STP_UP_GRAPH, API_STEP_ATTACH, 404, 404, NULL, APIMAP_DEFER, 451, "4.3.0",
   "The new draft is not visible to the mail API yet, try again later", "not-yet-consistent",
   "Graph is eventually consistent: a draft just created may be missing for a moment"},
  {STP_UP_GRAPH, API_STEP_SEND_DRAFT, 404, 404, NULL, APIMAP_DEFER, 451, "4.3.0",
   "The new draft is not visible to the mail API yet, try again later", "not-yet-consistent",
   "Graph is eventually consistent: a draft just created may be missing for a moment"},
  {STP_UP_GRAPH, API_STEP_UPLOAD, 404, 404, NULL, APIMAP_DEFER, 451, "4.3.0",
   "The attachment's upload session expired, try again later", "upload-expired",
   "the upload URL expired or its session is gone: the proxy starts a new session once"},
  {ANY_KIND, ANY_STEP, 409, 409, NULL, APIMAP_DEFER, 451, "4.3.0",
   "The mail API reported a conflict, try again later", "conflict", NULL},
  {ANY_KIND, ANY_STEP, 412, 412, NULL, APIMAP_DEFER, 451, "4.3.0",
   "The mail API reported a failed precondition, try again later", "precondition-failed", NULL},
  {ANY_KIND, ANY_STEP, 423, 423, NULL, APIMAP_DEFER, 451, "4.3.0",
   "The mailbox item is locked, try again later", "locked", NULL},
  /* Refusals an admin must fix, named so that they can. */
  {STP_UP_GRAPH, ANY_STEP, 403, 403, "ErrorSendAsDenied", APIMAP_FAIL, 550, "5.7.60",
   "The mailbox may not send as this From address", "send-as-denied",
   "grant the mailbox 'Send As' on the From address (Exchange admin center), or set the "
   "route's rewrite.header_from to the mailbox's own address"},
  {STP_UP_GRAPH, API_STEP_DRAFT, 403, 403, NULL, APIMAP_FAIL, 550, "5.7.1",
   "Messages this large need the Graph permission Mail.ReadWrite", "permission-mail-readwrite",
   "large messages go as a draft plus attachment uploads: grant the app the application "
   "permission Mail.ReadWrite and admin consent, or keep messages under Graph's 4 MB"},
  {STP_UP_GRAPH, API_STEP_ATTACH, 403, 403, NULL, APIMAP_FAIL, 550, "5.7.1",
   "Messages this large need the Graph permission Mail.ReadWrite", "permission-mail-readwrite",
   "grant the app the application permission Mail.ReadWrite and admin consent"},
  {STP_UP_GRAPH, ANY_STEP, 403, 403, NULL, APIMAP_FAIL, 550, "5.7.1",
   "The app may not send mail for this mailbox", "permission-mail-send",
   "grant the app the application permission Mail.Send with admin consent; an application "
   "access policy may also exclude this mailbox"},
  {STP_UP_GRAPH, ANY_STEP, 404, 404, NULL, APIMAP_FAIL, 550, "5.1.0",
   "The sending mailbox does not exist for the mail API", "mailbox-not-found",
   "check the upstream's mailbox: (a user principal name or object id with an Exchange "
   "Online license)"},
  {STP_UP_GMAIL, ANY_STEP, 403, 403, "insufficientPermissions", APIMAP_FAIL, 550, "5.7.1",
   "The token may not send mail", "permission-gmail-send",
   "the refresh token lacks the scope https://www.googleapis.com/auth/gmail.send"},
  {STP_UP_GMAIL, ANY_STEP, 403, 403, NULL, APIMAP_FAIL, 550, "5.7.1",
   "The mail API refused to send for this account", "permission", NULL},
  {ANY_KIND, ANY_STEP, 413, 413, NULL, APIMAP_FAIL, 552, "5.3.4",
   "Message too big for the mail API", "too-big", NULL},
  {STP_UP_GRAPH, ANY_STEP, 400, 400, "ErrorMessageSizeExceeded", APIMAP_FAIL, 552, "5.3.4",
   "Message too big for the mailbox", "too-big",
   "the mailbox's maximum send size (35 MB by default in Exchange Online)"},
  {STP_UP_GRAPH, ANY_STEP, 400, 400, "ErrorInvalidRecipients", APIMAP_FAIL, 550, "5.1.3",
   "The mail API refused a recipient", "bad-recipient", NULL},
  {STP_UP_GRAPH, ANY_STEP, 400, 400, "ErrorMimeContentInvalidBase64String", APIMAP_FAIL, 554,
   "5.6.0", "The mail API could not read the message", "bad-mime", NULL},
  /* Every other refusal: the message's fault, as far as the API says. */
  {ANY_KIND, ANY_STEP, 400, 499, NULL, APIMAP_FAIL, 554, "5.0.0",
   "The mail API refused the message", "refused", NULL},
  /* Anything else (3xx, 1xx): not an answer we know. */
  {ANY_KIND, ANY_STEP, 0, 999, NULL, APIMAP_DEFER, 451, "4.3.0",
   "Unexpected answer from the mail API, try again later", "api-unexpected", NULL},
};
/* clang-format on */

void apimap_clean(const char *in, size_t n, char *out, size_t cap) {
  size_t o = 0;
  if (!cap)
    return;
  for (size_t i = 0; i < n && o + 1 < cap; i++) {
    unsigned char c = (unsigned char)in[i];
    out[o++] = c >= 0x20 && c < 0x7f ? (char)c : c == '\n' || c == '\r' || c == '\t' ? ' ' : '?';
  }
  out[o] = '\0';
}

static void copy_str(const json_t *v, char *out, size_t cap) {
  if (json_is_string(v))
    apimap_clean(json_string_value(v), json_string_length(v), out, cap);
  else if (json_is_integer(v))
    snprintf(out, cap, "%lld", (long long)json_integer_value(v));
}

bool apimap_error(stp_up_kind kind, const char *body, size_t len, char *code, size_t codecap,
                  char *msg, size_t msgcap) {
  code[0] = msg[0] = '\0';
  int err;
  json_t *doc = body && len ? stp_json_load(body, len, 6, &err) : NULL;
  json_t *e = doc ? json_object_get(doc, "error") : NULL;
  if (json_is_string(e)) /* OAuth-style {"error": "invalid_token"} */
    copy_str(e, code, codecap);
  if (json_is_object(e)) {
    copy_str(json_object_get(e, "message"), msg, msgcap);
    if (kind == STP_UP_GMAIL) {
      /* The reason of the first error says most ("rateLimitExceeded"). */
      json_t *errs = json_object_get(e, "errors");
      json_t *first = json_is_array(errs) ? json_array_get(errs, 0) : NULL;
      copy_str(first ? json_object_get(first, "reason") : NULL, code, codecap);
      if (!code[0])
        copy_str(json_object_get(e, "status"), code, codecap);
    } else {
      copy_str(json_object_get(e, "code"), code, codecap);
    }
  }
  json_decref(doc);
  return code[0] || msg[0];
}

static int month_of(const char *m) {
  static const char *const names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; i++)
    if (!strncmp(m, names[i], 3))
      return i;
  return -1;
}

uint64_t apimap_retry_after(const char *v, int64_t now_s) {
  if (!v)
    return 0;
  while (*v == ' ')
    v++;
  uint64_t secs = 0;
  if (*v >= '0' && *v <= '9') {
    for (; *v >= '0' && *v <= '9'; v++)
      secs = secs < UINT64_C(100000000) ? secs * 10 + (uint64_t)(*v - '0') : secs;
    while (*v == ' ')
      v++;
    if (*v)
      return 0;
  } else {
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
    char wd[4], mon[4], gmt[4];
    int d, y, h, mi, s;
    if (sscanf(v, "%3s, %d %3s %d %d:%d:%d %3s", wd, &d, mon, &y, &h, &mi, &s, gmt) != 8 ||
        strcmp(gmt, "GMT") || month_of(mon) < 0 || d < 1 || d > 31 || y < 1970 || y > 9999 ||
        h > 23 || mi > 59 || s > 60)
      return 0;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = month_of(mon),
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = s};
    int64_t at = (int64_t)timegm(&tm);
    secs = at > now_s ? (uint64_t)(at - now_s) : 0;
  }
  uint64_t ms = secs * 1000;
  return ms > APIMAP_RETRY_MAX_MS ? APIMAP_RETRY_MAX_MS : ms;
}

static bool row_fits(const apimap_row *r, const apimap_in *in, const char *code) {
  return (r->kind == ANY_KIND || r->kind == (int)in->kind) &&
         (r->step == ANY_STEP || r->step == (int)in->step) && in->status >= r->status_lo &&
         in->status <= r->status_hi && (!r->code || !stp_ascii_casecmp(r->code, code));
}

/* The id the device sees in the 250: Graph's request-id header, Gmail's
 * message id. */
static void success_id(const apimap_in *in, apimap_out *out) {
  if (in->request_id) {
    apimap_clean(in->request_id, strlen(in->request_id), out->id, sizeof out->id);
    return;
  }
  int err;
  json_t *doc = in->body && in->body_len ? stp_json_load(in->body, in->body_len, 4, &err) : NULL;
  copy_str(doc ? json_object_get(doc, "id") : NULL, out->id, sizeof out->id);
  json_decref(doc);
}

void apimap_answer(const apimap_in *in, apimap_out *out) {
  memset(out, 0, sizeof *out);
  const char *api = in->kind == STP_UP_GMAIL ? "the Gmail API" : "Microsoft Graph";
  if (in->status < 200 || in->status > 299)
    apimap_error(in->kind, in->body, in->body_len, out->api_code, sizeof out->api_code,
                 out->api_message, sizeof out->api_message);
  const apimap_row *r = NULL;
  for (size_t i = 0; i < sizeof rows / sizeof *rows && !r; i++)
    if (row_fits(&rows[i], in, out->api_code))
      r = &rows[i];
  out->action = r->action;
  out->reason = r->reason;
  out->hint = r->hint;
  /* The rows of what is temporary by nature (above): worth one more try. */
  out->retry = r->action == APIMAP_DEFER &&
               (in->status == 404 || in->status == 409 || in->status == 412 || in->status == 423);
  if (r->action == APIMAP_REFRESH && in->token_refreshed) {
    /* A fresh token refused too: the app's credentials or consent. */
    out->action = APIMAP_DEFER;
    out->code = 454;
    out->reason = "token-refused-twice";
    out->hint = "a freshly fetched token was refused: check the app registration, its "
                "permissions and admin consent";
    snprintf(out->text, sizeof out->text,
             "4.7.0 The mail API refused the proxy's credentials, try again later (%s %d%s%s)", api,
             in->status, out->api_code[0] ? " " : "", out->api_code);
    return;
  }
  out->code = r->smtp;
  if (r->action == APIMAP_SENT) {
    success_id(in, out);
    snprintf(out->text, sizeof out->text, "%s %s %s%s%s", r->enh, r->what, api,
             out->id[0] ? (in->kind == STP_UP_GMAIL ? " as id " : ", request-id ") : "", out->id);
    return;
  }
  if (r->action == APIMAP_DEFER)
    out->retry_ms = apimap_retry_after(in->retry_after, in->now_s);
  if (r->action == APIMAP_DEFER || r->action == APIMAP_FAIL)
    snprintf(out->text, sizeof out->text, "%s %s (%s %d%s%s%s%s)", r->enh, r->what, api, in->status,
             out->api_code[0] ? " " : "", out->api_code, out->api_message[0] ? ": " : "",
             out->api_message);
}
