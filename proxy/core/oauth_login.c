/* oauth_login.c - requests and answers of `oauth2 login` (see
 * oauth_login.h), and the table of provider errors it explains.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/json.h"
#include "smtp-tls-proxy/oauth_login.h"

#define JSON_MAX_DEPTH 16

/* ---- PKCE and the authorization URL ------------------------------------- */

long oauth_b64url(const unsigned char *in, size_t n, char *out, size_t cap) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t need = (n / 3) * 4 + (n % 3 ? n % 3 + 1 : 0);
  if (need + 1 > cap)
    return STP_EFULL;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n)
      v |= in[i + 2];
    out[o++] = al[(v >> 18) & 63];
    out[o++] = al[(v >> 12) & 63];
    if (i + 1 < n)
      out[o++] = al[(v >> 6) & 63];
    if (i + 2 < n)
      out[o++] = al[v & 63];
  }
  out[o] = '\0';
  return (long)o;
}

int oauth_authz_url(stp_buf *b, const oauth_authz_req *r) {
  size_t was = b->len;
  stp_buf q;
  stp_buf_init(&q, b->cap);
  int rc = 0;
  rc |= oauth2_form_add(&q, "response_type", "code");
  rc |= oauth2_form_add(&q, "client_id", r->client_id);
  rc |= oauth2_form_add(&q, "redirect_uri", r->redirect_uri);
  if (r->scope)
    rc |= oauth2_form_add(&q, "scope", r->scope);
  rc |= oauth2_form_add(&q, "state", r->state);
  rc |= oauth2_form_add(&q, "code_challenge", r->challenge);
  rc |= oauth2_form_add(&q, "code_challenge_method", "S256");
  if (r->google) {
    rc |= oauth2_form_add(&q, "access_type", "offline");
    rc |= oauth2_form_add(&q, "prompt", "consent");
  }
  if (rc == 0)
    rc = stp_buf_appendf(b, "%s%c%.*s", r->base, strchr(r->base, '?') ? '&' : '?', (int)q.len,
                         q.data);
  stp_buf_free(&q);
  if (rc < 0) {
    b->len = was;
    return STP_EFULL;
  }
  return STP_OK;
}

/* ---- answers ------------------------------------------------------------ */

/* Printable ASCII copy (anything else becomes '?'), bounded. */
static void clean_copy(char *dst, size_t cap, const char *s) {
  size_t i = 0;
  for (; s && *s && i + 1 < cap; s++)
    dst[i++] = ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) ? '?' : *s;
  dst[i] = '\0';
}

/* "HTTP 400: error: description" from a document, or a plain reason. */
static void error_line(int status, const json_t *doc, char *err, size_t errlen) {
  const char *e = doc ? json_string_value(json_object_get(doc, "error")) : NULL;
  const char *d = doc ? json_string_value(json_object_get(doc, "error_description")) : NULL;
  char ce[80], cd[400];
  clean_copy(ce, sizeof ce, e);
  clean_copy(cd, sizeof cd, d);
  if (e)
    snprintf(err, errlen, "HTTP %d: %s%s%s", status, ce, cd[0] ? ": " : "", cd);
  else
    snprintf(err, errlen, "HTTP %d without an OAuth2 error object", status);
}

static json_t *load_object(const char *body, size_t len) {
  int rc;
  if (len > OAUTH2_RESPONSE_MAX)
    return NULL;
  json_t *doc = stp_json_load(body, len, JSON_MAX_DEPTH, &rc);
  if (doc && !json_is_object(doc)) {
    json_decref(doc);
    doc = NULL;
  }
  return doc;
}

/* A string member copied (printable only), or false when absent or not a
 * string or too long. */
static bool take_str(const json_t *doc, const char *key, char *out, size_t cap) {
  const json_t *v = json_object_get(doc, key);
  if (!json_is_string(v) || json_string_length(v) + 1 > cap)
    return false;
  clean_copy(out, cap, json_string_value(v));
  return true;
}

/* A non-negative integer member (or a string of digits). */
static bool take_int(const json_t *doc, const char *key, int64_t *out) {
  const json_t *v = json_object_get(doc, key);
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    *out = json_integer_value(v);
    return true;
  }
  const char *s = json_string_value(v);
  if (!s || !*s || strlen(s) > 12 || strspn(s, "0123456789") != strlen(s))
    return false;
  *out = strtoll(s, NULL, 10);
  return true;
}

int oauth_device_parse(int status, const char *body, size_t len, oauth_device *d, char *err,
                       size_t errlen) {
  memset(d, 0, sizeof *d);
  json_t *doc = load_object(body, len);
  const char *why = NULL;
  if (status != 200 || (doc && json_object_get(doc, "error"))) {
    error_line(status, doc, err, errlen);
    json_decref(doc);
    return STP_EIO;
  }
  const json_t *dc = doc ? json_object_get(doc, "device_code") : NULL;
  if (!doc)
    why = "the device authorization answer is not a JSON object";
  else if (!json_is_string(dc) || !oauth2_token_ok(json_string_value(dc), json_string_length(dc)))
    why = "the device authorization answer has no usable device_code";
  else if (!take_str(doc, "user_code", d->user_code, sizeof d->user_code) || !d->user_code[0])
    why = "the device authorization answer has no user_code";
  else if (!take_str(doc, "verification_uri", d->verification_uri, sizeof d->verification_uri) &&
           !take_str(doc, "verification_url", d->verification_uri, sizeof d->verification_uri))
    why = "the device authorization answer has no verification_uri";
  else if (!take_int(doc, "expires_in", &d->expires_in) || d->expires_in == 0)
    why = "the device authorization answer has no expires_in";
  if (!why) {
    d->device_code = stp_xstrndup(json_string_value(dc), json_string_length(dc));
    take_str(doc, "verification_uri_complete", d->verification_uri_complete,
             sizeof d->verification_uri_complete);
    take_str(doc, "message", d->message, sizeof d->message);
    if (!take_int(doc, "interval", &d->interval) || d->interval == 0)
      d->interval = 5;
    if (d->interval > 60)
      d->interval = 60;
  }
  json_decref(doc);
  if (why) {
    snprintf(err, errlen, "%s", why);
    return STP_ESYNTAX;
  }
  return STP_OK;
}

void oauth_device_free(oauth_device *d) {
  stp_free_secret(d->device_code);
  memset(d, 0, sizeof *d);
}

/* ---- the id_token's account (display only) ----------------------------- */

/* The payload of a JWT, decoded; NULL when it is not one. The signature is
 * not checked: the token came straight from the token endpoint over TLS
 * (OpenID Connect Core 3.1.3.7), and it is only shown. */
static char *jwt_payload(const char *jwt, size_t *n) {
  const char *a = strchr(jwt, '.');
  const char *b = a ? strchr(a + 1, '.') : NULL;
  if (!b || (size_t)(b - a) > OAUTH2_TOKEN_MAX)
    return NULL;
  char *out = stp_xmalloc((size_t)(b - a));
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (const char *p = a + 1; p < b; p++) {
    int v = stp_b64_digit(*p, '-', '_');
    if (v < 0) {
      free(out);
      return NULL;
    }
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (char)((acc >> bits) & 0xff);
    }
  }
  *n = o;
  return out;
}

static void account_of(const char *id_token, char *out, size_t cap) {
  size_t n;
  char *p = id_token ? jwt_payload(id_token, &n) : NULL;
  json_t *doc = p ? load_object(p, n) : NULL;
  if (doc && !take_str(doc, "email", out, cap))
    take_str(doc, "preferred_username", out, cap);
  json_decref(doc);
  free(p);
}

/* ---- token answers ------------------------------------------------------- */

static oauth_verdict verdict_of_error(const char *e) {
  if (!strcmp(e, "authorization_pending"))
    return OL_PENDING;
  if (!strcmp(e, "slow_down"))
    return OL_SLOW_DOWN;
  if (!strcmp(e, "expired_token"))
    return OL_EXPIRED;
  if (!strcmp(e, "access_denied") || !strcmp(e, "authorization_declined"))
    return OL_DENIED;
  return OL_FAILED;
}

oauth_verdict oauth_token_verdict(int status, const char *body, size_t len, oauth2_token_resp *t,
                                  oauth_extra *extra, char *err, size_t errlen) {
  memset(extra, 0, sizeof *extra);
  memset(t, 0, sizeof *t);
  json_t *doc = load_object(body, len);
  const char *e = doc ? json_string_value(json_object_get(doc, "error")) : NULL;
  if (status != 200 || e) {
    error_line(status, doc, err, errlen);
    oauth_verdict v = e && status == 400 ? verdict_of_error(e) : OL_FAILED;
    json_decref(doc);
    return v;
  }
  if (doc) {
    extra->has_rt_expires_in = take_int(doc, "refresh_token_expires_in", &extra->rt_expires_in);
    const json_t *id = json_object_get(doc, "id_token");
    if (json_is_string(id))
      account_of(json_string_value(id), extra->account, sizeof extra->account);
  }
  json_decref(doc);
  if (oauth2_evaluate(status, body, len, t, err, errlen) < 0)
    return OL_FAILED;
  if (!t->refresh_token) {
    snprintf(err, errlen,
             "the answer has no refresh_token (Microsoft: add offline_access to scope; "
             "Google: the request had access_type=offline and prompt=consent)");
    oauth2_token_resp_free(t);
    return OL_FAILED;
  }
  return OL_TOKEN;
}
