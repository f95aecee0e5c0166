/* fuzz_jwt.c - the pure half of signed JWTs: Google's service-account JSON
 * key as read from a file an admin downloaded (untrusted bytes), and the
 * JWT's header and claim JSON built from configuration strings.
 *
 * Input: byte 0 picks the part. 0: the rest is a service-account key.
 * Otherwise the rest is split at NUL bytes into strings for kid, x5t#S256,
 * iss, sub, aud, scope and jti.
 * Invariants: the key reader accepts only with all four members set,
 * NUL-free and non-empty, and otherwise gives a NUL-terminated reason with
 * nothing left allocated; header and claims are NULL exactly when a string
 * is not UTF-8, else a JSON object that jansson reads back with the same
 * members; base64url output has the RFC 4648 length, no padding, only the
 * URL alphabet; the signing input is both parts joined by one '.'.
 */
#include "fuzz_common.h"

#include "smtp-tls-proxy/json.h"
#include "smtp-tls-proxy/jwt.h"

static void key(const char *p, size_t n) {
  jwt_sa_key k;
  char err[200];
  memset(err, 'x', sizeof err);
  if (jwt_sa_parse(p, n, &k, err, sizeof err) == 0) {
    const char *f[] = {k.client_email, k.private_key, k.private_key_id, k.token_uri};
    for (size_t i = 0; i < 4; i++)
      CHECK(f[i] && f[i][0]);
    jwt_sa_free(&k);
  } else {
    CHECK(memchr(err, '\0', sizeof err) != NULL);
    CHECK(!k.client_email && !k.private_key && !k.private_key_id && !k.token_uri);
  }
}

static void b64_ok(const stp_buf *b, size_t from, size_t n) {
  CHECK(b->len - from == n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0));
  for (size_t i = from; i < b->len; i++)
    CHECK((b->data[i] >= 'A' && b->data[i] <= 'Z') || (b->data[i] >= 'a' && b->data[i] <= 'z') ||
          (b->data[i] >= '0' && b->data[i] <= '9') || b->data[i] == '-' || b->data[i] == '_');
}

static void same_string(const json_t *o, const char *k, const char *want) {
  const json_t *v = json_object_get(o, k);
  if (!want)
    CHECK(!v);
  else
    CHECK(v && json_is_string(v) && !strcmp(json_string_value(v), want));
}

static void build(const char *p, size_t n) {
  const char *s[7] = {NULL};
  size_t i = 0, start = 0;
  for (size_t j = 0; j <= n && i < 7; j++)
    if (j == n || p[j] == '\0') {
      s[i++] = j > start || j < n ? p + start : NULL; /* the last piece may be absent */
      start = j + 1;
    }
  jwt_header h = {.alg = n % 2 ? JWT_PS256 : JWT_RS256, .kid = s[0], .x5t_s256 = s[1]};
  jwt_claims c = {.iss = s[2],
                  .sub = s[3],
                  .aud = s[4],
                  .scope = s[5],
                  .jti = s[6],
                  .iat = (int64_t)n,
                  .exp = (int64_t)n + 600};
  char *hj = jwt_header_json(&h), *cj = jwt_claims_json(&c);
  if (hj && cj) {
    int rc;
    json_t *o = stp_json_load(cj, strlen(cj), 2, &rc);
    CHECK(o && json_is_object(o));
    same_string(o, "iss", c.iss);
    same_string(o, "sub", c.sub);
    same_string(o, "jti", c.jti);
    json_decref(o);
    o = stp_json_load(hj, strlen(hj), 2, &rc);
    CHECK(o && json_is_object(o));
    same_string(o, "kid", h.kid);
    json_decref(o);
    stp_buf b;
    stp_buf_init(&b, JWT_MAX);
    if (jwt_signing_input(&b, hj, strlen(hj), cj, strlen(cj)) == 0) {
      const char *dot = memchr(b.data, '.', b.len);
      CHECK(dot && memchr(dot + 1, '.', b.len - (size_t)(dot + 1 - b.data)) == NULL);
      stp_buf one;
      stp_buf_init(&one, JWT_MAX);
      CHECK(jwt_b64url(&one, hj, strlen(hj)) == 0);
      b64_ok(&one, 0, strlen(hj));
      CHECK((size_t)(dot - b.data) == one.len && !memcmp(b.data, one.data, one.len));
      stp_buf_free(&one);
    }
    stp_buf_free(&b);
  }
  free(hj);
  free(cj);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  char *p = malloc(size); /* the strings of build() end with a NUL */
  CHECK(p);
  memcpy(p, data + 1, size - 1);
  p[size - 1] = '\0';
  if (data[0] == 0)
    key(p, size - 1);
  else
    build(p, size - 1);
  free(p);
  return 0;
}
