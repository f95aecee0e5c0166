/* jwt.c - JWT header, claims, signing input and the service-account key,
 * pure (see jwt.h).
 *
 * JSON goes through jansson (json.h's wiping allocator) with compact output
 * and keys in insertion order, so the same input always gives the same
 * bytes, which the RFC 7515 vector test relies on.
 */
#include "smtp-tls-proxy/jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/json.h"

const char *jwt_alg_name(jwt_alg a) {
  return a == JWT_PS256 ? "PS256" : "RS256";
}

int jwt_b64url(stp_buf *b, const void *p, size_t n) {
  static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const unsigned char *s = p;
  size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
  if (stp_buf_space(b) < need)
    return STP_EFULL;
  char *o = b->data + b->len;
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
    *o++ = tab[(v >> 6) & 63];
    *o++ = tab[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)s[i] << 16;
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
    *o++ = tab[v >> 18];
    *o++ = tab[(v >> 12) & 63];
    *o++ = tab[(v >> 6) & 63];
  }
  b->len += need;
  return STP_OK;
}

/* ---- JSON -------------------------------------------------------------- */

static int put_str(json_t *o, const char *key, const char *val) {
  if (!val)
    return 0;
  json_t *s = json_string(val); /* NULL for invalid UTF-8 */
  return s ? json_object_set_new(o, key, s) : -1;
}

static int put_time(json_t *o, const char *key, int64_t t) {
  return t ? json_object_set_new(o, key, json_integer((json_int_t)t)) : 0;
}

/* Compact text of o (consumed), malloc'd by the C library. */
static char *dump(json_t *o, int bad) {
  char *out = NULL;
  if (!bad) {
    size_t need = json_dumpb(o, NULL, 0, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (need > 0 && need < JWT_MAX) {
      out = stp_xmalloc(need + 1);
      json_dumpb(o, out, need, JSON_COMPACT | JSON_PRESERVE_ORDER);
      out[need] = '\0';
    }
  }
  json_decref(o);
  return out;
}

char *jwt_header_json(const jwt_header *h) {
  stp_json_init();
  json_t *o = json_object();
  int bad = put_str(o, "alg", jwt_alg_name(h->alg));
  bad |= put_str(o, "typ", "JWT");
  bad |= put_str(o, "kid", h->kid);
  bad |= put_str(o, "x5t", h->x5t);
  bad |= put_str(o, "x5t#S256", h->x5t_s256);
  return dump(o, bad);
}

char *jwt_claims_json(const jwt_claims *c) {
  stp_json_init();
  json_t *o = json_object();
  int bad = put_str(o, "iss", c->iss);
  bad |= put_str(o, "sub", c->sub);
  bad |= put_str(o, "aud", c->aud);
  bad |= put_str(o, "scope", c->scope);
  bad |= put_str(o, "jti", c->jti);
  bad |= put_time(o, "iat", c->iat);
  bad |= put_time(o, "nbf", c->nbf);
  bad |= put_time(o, "exp", c->exp);
  return dump(o, bad);
}

/* ---- signing ----------------------------------------------------------- */

int jwt_signing_input(stp_buf *out, const char *header_json, size_t hn, const char *claims_json,
                      size_t cn) {
  out->len = 0;
  int rc = jwt_b64url(out, header_json, hn);
  if (rc == 0)
    rc = stp_buf_append(out, ".", 1);
  if (rc == 0)
    rc = jwt_b64url(out, claims_json, cn);
  return rc;
}

int jwt_build(const jwt_header *h, const jwt_claims *c, jwt_sign_fn sign, void *arg, char **out) {
  *out = NULL;
  char *hj = jwt_header_json(h), *cj = jwt_claims_json(c);
  stp_buf b;
  stp_buf_init(&b, JWT_MAX);
  unsigned char sig[JWT_SIG_MAX];
  size_t sig_len = 0;
  int rc = hj && cj ? jwt_signing_input(&b, hj, strlen(hj), cj, strlen(cj)) : STP_EINVAL;
  if (rc == 0)
    rc = sign(arg, h->alg, (const unsigned char *)b.data, b.len, sig, sizeof sig, &sig_len);
  if (rc == 0)
    rc = stp_buf_append(&b, ".", 1);
  if (rc == 0)
    rc = jwt_b64url(&b, sig, sig_len);
  if (rc == 0)
    *out = stp_xstrndup(b.data, b.len);
  if (cj)
    stp_cleanse(cj, strlen(cj));
  free(hj);
  free(cj);
  stp_cleanse(sig, sizeof sig);
  stp_cleanse(b.data, b.cap);
  stp_buf_free(&b);
  return rc;
}

void jwt_sa_claims(jwt_claims *c, const char *client_email, const char *subject, const char *aud,
                   const char *scope, int64_t now) {
  *c = (jwt_claims){.iss = client_email,
                    .sub = subject,
                    .aud = aud,
                    .scope = scope,
                    .iat = now,
                    .exp = now + JWT_SA_LIFETIME};
}

void jwt_assertion_claims(jwt_claims *c, const char *client_id, const char *aud, const char *jti,
                          int64_t now) {
  *c = (jwt_claims){.iss = client_id,
                    .sub = client_id,
                    .aud = aud,
                    .jti = jti,
                    .iat = now,
                    .nbf = now,
                    .exp = now + JWT_CA_LIFETIME};
}

/* ---- Google's service-account key ---------------------------------------- */

static int take(const json_t *doc, const char *key, char **dst, char *err, size_t errlen) {
  const json_t *v = json_object_get(doc, key);
  if (!v || !json_is_string(v) || json_string_length(v) == 0) {
    snprintf(err, errlen, "it has no %s (expected Google's service-account JSON key)", key);
    return STP_ESYNTAX;
  }
  *dst = stp_xstrndup(json_string_value(v), json_string_length(v));
  return STP_OK;
}

int jwt_sa_parse(const char *p, size_t n, jwt_sa_key *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  int rc;
  json_t *doc = stp_json_load(p, n, 4, &rc);
  if (!doc || !json_is_object(doc)) {
    snprintf(err, errlen, "it is not a JSON object (expected Google's service-account JSON key)");
    json_decref(doc);
    return STP_ESYNTAX;
  }
  const json_t *type = json_object_get(doc, "type");
  if (type && (!json_is_string(type) || strcmp(json_string_value(type), "service_account"))) {
    snprintf(err, errlen, "its type is not \"service_account\"");
    rc = STP_ESYNTAX;
  }
  if (rc == 0)
    rc = take(doc, "client_email", &out->client_email, err, errlen);
  if (rc == 0)
    rc = take(doc, "private_key", &out->private_key, err, errlen);
  if (rc == 0)
    rc = take(doc, "private_key_id", &out->private_key_id, err, errlen);
  if (rc == 0)
    rc = take(doc, "token_uri", &out->token_uri, err, errlen);
  json_decref(doc); /* wiped block by block: the private key too */
  if (rc < 0)
    jwt_sa_free(out);
  return rc;
}

void jwt_sa_free(jwt_sa_key *k) {
  free(k->client_email);
  stp_free_secret(k->private_key);
  free(k->private_key_id);
  free(k->token_uri);
  memset(k, 0, sizeof *k);
}
