/* oauth2.c - token endpoint requests and answers, pure (see oauth2.h).
 *
 * The answer is read by jansson (json.h: duplicate keys refused, every
 * block wiped when freed); this file only decides which members it
 * believes: the six string fields and expires_in that RFC 6749 defines,
 * each of the right type and within OAUTH2_TOKEN_MAX.
 */
#include "smtp-tls-proxy/oauth2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/json.h"

#define JSON_MAX_DEPTH 16

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
static bool is_alnum(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* ---- the form ---------------------------------------------------------- */

static int form_escape(stp_buf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    char c = *s;
    int rc;
    if (is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      rc = stp_buf_append(b, &c, 1);
    } else if (c == ' ') {
      rc = stp_buf_append(b, "+", 1);
    } else {
      unsigned char u = (unsigned char)c;
      char e[3] = {'%', hex[u >> 4], hex[u & 15]};
      rc = stp_buf_append(b, e, 3);
    }
    if (rc < 0)
      return rc;
  }
  return STP_OK;
}

int oauth2_form_add(stp_buf *b, const char *key, const char *val) {
  size_t mark = b->len;
  int rc = b->len ? stp_buf_append(b, "&", 1) : STP_OK;
  if (rc == 0)
    rc = form_escape(b, key);
  if (rc == 0)
    rc = stp_buf_append(b, "=", 1);
  if (rc == 0)
    rc = form_escape(b, val);
  if (rc < 0) {
    stp_cleanse(b->data + mark, b->len - mark);
    b->len = mark;
  }
  return rc;
}

void oauth2_token_resp_free(oauth2_token_resp *t) {
  stp_free_secret(t->access_token);
  stp_free_secret(t->refresh_token);
  free(t->token_type);
  free(t->scope);
  free(t->error);
  free(t->error_description);
  memset(t, 0, sizeof *t);
}

/* ---- the answer -------------------------------------------------------- */

static const char *const string_keys[] = {"access_token", "token_type", "refresh_token",
                                          "scope",        "error",      "error_description"};

static char **field_of(oauth2_token_resp *t, size_t k) {
  char **f[] = {&t->access_token, &t->token_type, &t->refresh_token,
                &t->scope,        &t->error,      &t->error_description};
  return f[k];
}

/* expires_in: a non-negative integer, or a string of digits as some
 * endpoints send ("3599"). */
static int take_seconds(const json_t *v, bool *has, int64_t *out) {
  int64_t e = 0;
  if (json_is_integer(v)) {
    e = json_integer_value(v);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > 12)
      return STP_ESYNTAX;
    for (size_t i = 0; i < n; i++) {
      if (!is_digit(s[i]))
        return STP_ESYNTAX;
      e = e * 10 + (s[i] - '0');
    }
  } else {
    return STP_ESYNTAX;
  }
  if (e < 0)
    return STP_ESYNTAX;
  *has = true;
  *out = e;
  return STP_OK;
}

static int take_members(const json_t *doc, oauth2_token_resp *t) {
  for (size_t k = 0; k < sizeof string_keys / sizeof *string_keys; k++) {
    const json_t *v = json_object_get(doc, string_keys[k]);
    if (!v || json_is_null(v))
      continue; /* absent */
    if (!json_is_string(v))
      return STP_ESYNTAX;
    size_t n = json_string_length(v);
    if (n > OAUTH2_TOKEN_MAX)
      return STP_ETOOLONG;
    *field_of(t, k) = stp_xstrndup(json_string_value(v), n);
  }
  const json_t *e = json_object_get(doc, "expires_in");
  int rc = e && !json_is_null(e) ? take_seconds(e, &t->has_expires_in, &t->expires_in) : STP_OK;
  /* Google, for apps in "Testing": the refresh token dies after 7 days. */
  e = json_object_get(doc, "refresh_token_expires_in");
  if (rc == 0 && e && !json_is_null(e))
    rc = take_seconds(e, &t->has_refresh_token_expires_in, &t->refresh_token_expires_in);
  return rc;
}

int oauth2_json_parse(const char *p, size_t n, oauth2_token_resp *out) {
  memset(out, 0, sizeof *out);
  if (n > OAUTH2_RESPONSE_MAX)
    return STP_ETOOLONG;
  int rc;
  json_t *doc = stp_json_load(p, n, JSON_MAX_DEPTH, &rc);
  if (doc && !json_is_object(doc))
    rc = STP_ESYNTAX;
  if (rc == 0)
    rc = take_members(doc, out);
  json_decref(doc); /* wiped block by block */
  if (rc < 0)
    oauth2_token_resp_free(out);
  return rc;
}

/* ---- judging an answer ------------------------------------------------- */

bool oauth2_token_ok(const char *s, size_t n) {
  if (!s || n == 0 || n > OAUTH2_TOKEN_MAX)
    return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
      return false;
  return true;
}

/* Endpoint text for an error line: printable ASCII only, bounded. */
static void clean_copy(char *dst, size_t cap, const char *s, size_t max) {
  size_t i = 0;
  for (; s && *s && i + 1 < cap && i < max; s++)
    dst[i++] = ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) ? '?' : *s;
  dst[i] = '\0';
}

int oauth2_evaluate(int status, const char *body, size_t len, oauth2_token_resp *t, char *err,
                    size_t errlen) {
  int jrc = oauth2_json_parse(body, len, t);
  char e[80] = "", d[320] = "";
  if (jrc == 0) {
    clean_copy(e, sizeof e, t->error, 64);
    clean_copy(d, sizeof d, t->error_description, 300);
  }
  if (status != 200 || (jrc == 0 && t->error)) {
    if (jrc == 0 && t->error)
      snprintf(err, errlen, "HTTP %d: %s%s%s", status, e, d[0] ? ": " : "", d);
    else
      snprintf(err, errlen, "HTTP %d without an OAuth2 error object", status);
    oauth2_token_resp_free(t);
    return STP_EIO;
  }
  if (jrc < 0) {
    snprintf(err, errlen, "token response is not a valid JSON object (%s)", stp_strerror(jrc));
    return jrc;
  }
  const char *why = NULL;
  if (!t->access_token)
    why = "token response has no access_token";
  else if (!oauth2_token_ok(t->access_token, strlen(t->access_token)))
    why = "access_token has characters a bearer token cannot have";
  else if (t->token_type && stp_ascii_casecmp(t->token_type, "bearer"))
    why = "token_type is not Bearer";
  else if (t->refresh_token && !oauth2_token_ok(t->refresh_token, strlen(t->refresh_token)))
    why = "refresh_token has characters a token cannot have";
  if (why) {
    snprintf(err, errlen, "%s", why);
    oauth2_token_resp_free(t);
    return STP_ESYNTAX;
  }
  return STP_OK;
}

uint64_t oauth2_refresh_at(uint64_t now_ms, bool has_expires_in, int64_t expires_in) {
  int64_t e = has_expires_in ? expires_in : OAUTH2_DEFAULT_EXPIRES_S;
  if (e <= 0)
    return now_ms;
  if (e > 10LL * 365 * 86400)
    e = 10LL * 365 * 86400;
  uint64_t keep_ms = e > 2 * OAUTH2_REFRESH_MARGIN_S
                         ? (uint64_t)(e - OAUTH2_REFRESH_MARGIN_S) * 1000
                         : (uint64_t)e * 1000 / 2;
  return now_ms + keep_ms;
}

int oauth2_token_from_output(const char *p, size_t n, char **out) {
  *out = NULL;
  while (n && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
    p++;
    n--;
  }
  while (n && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
    n--;
  if (!oauth2_token_ok(p, n))
    return STP_ESYNTAX;
  *out = stp_xstrndup(p, n);
  return STP_OK;
}

const char *oauth2_error_reason(const char *error) {
  /* RFC 6749 5.2 and 4.1.2.1, RFC 8628 3.5: a bounded set of label values */
  static const char *const known[] = {
      "invalid_request", "invalid_client",          "invalid_grant",         "unauthorized_client",
      "invalid_scope",   "unsupported_grant_type",  "access_denied",         "server_error",
      "expired_token",   "temporarily_unavailable", "authorization_pending", "slow_down"};
  for (size_t i = 0; error && i < sizeof known / sizeof *known; i++)
    if (!strcmp(error, known[i]))
      return known[i];
  return "other";
}
