/* test_jwt.c - the pure half of signed JWTs (jwt.h): base64url against RFC
 * 4648's vectors, the RFC 7515 A.2 signing input byte for byte, the header
 * and claim JSON of both grants, the whole JWT through a signer callback,
 * and Google's service-account JSON key, good and bad. (The RSA signatures
 * themselves, with the RFC 7515 A.2 key: tests/net/test_jwt_sign.c.)
 */
#include <criterion/criterion.h>
#include <string.h>

#include "smtp-tls-proxy/jwt.h"

static const char *b64u(const char *s) {
  static char out[256];
  stp_buf b;
  stp_buf_init(&b, sizeof out - 1);
  cr_assert_eq(jwt_b64url(&b, s, strlen(s)), 0);
  memcpy(out, b.data, b.len);
  out[b.len] = '\0';
  stp_buf_free(&b);
  return out;
}

Test(jwt, base64url_rfc4648_vectors_without_padding) {
  cr_assert_str_eq(b64u(""), "");
  cr_assert_str_eq(b64u("f"), "Zg");
  cr_assert_str_eq(b64u("fo"), "Zm8");
  cr_assert_str_eq(b64u("foo"), "Zm9v");
  cr_assert_str_eq(b64u("foob"), "Zm9vYg");
  cr_assert_str_eq(b64u("fooba"), "Zm9vYmE");
  cr_assert_str_eq(b64u("foobar"), "Zm9vYmFy");
  /* the URL alphabet: 0xfb 0xff -> "-_8" (standard base64: "+/8=") */
  cr_assert_str_eq(b64u("\xfb\xff"), "-_8");
}

Test(jwt, base64url_bound_leaves_buffer_unchanged) {
  stp_buf b;
  stp_buf_init(&b, 5);
  cr_assert_eq(jwt_b64url(&b, "ab", 2), 0); /* 3 characters */
  cr_assert_eq(jwt_b64url(&b, "abc", 3), STP_EFULL);
  cr_assert_eq(b.len, 3);
  stp_buf_free(&b);
}

/* RFC 7515 A.2.1: the JWS Protected Header {"alg":"RS256"} and the payload
 * with its CR LFs give exactly this signing input. */
Test(jwt, rfc7515_a2_signing_input) {
  static const char hdr[] = "{\"alg\":\"RS256\"}";
  static const char payload[] =
      "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
  stp_buf b;
  stp_buf_init(&b, 1024);
  cr_assert_eq(jwt_signing_input(&b, hdr, strlen(hdr), payload, strlen(payload)), 0);
  cr_assert_eq(b.len, strlen("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQog"
                             "Imh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"));
  cr_assert(!memcmp(b.data,
                    "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQog"
                    "Imh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
                    b.len));
  stp_buf_free(&b);
}

Test(jwt, header_json_of_both_grants) {
  jwt_header sa = {.alg = JWT_RS256, .kid = "0123abcd"};
  char *s = jwt_header_json(&sa);
  cr_assert_str_eq(s, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"0123abcd\"}");
  free(s);
  jwt_header ca = {.alg = JWT_PS256, .x5t_s256 = "q-_1"};
  s = jwt_header_json(&ca);
  cr_assert_str_eq(s, "{\"alg\":\"PS256\",\"typ\":\"JWT\",\"x5t#S256\":\"q-_1\"}");
  free(s);
  jwt_header rs = {.alg = JWT_RS256, .x5t = "sha1"};
  s = jwt_header_json(&rs);
  cr_assert_str_eq(s, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5t\":\"sha1\"}");
  free(s);
  jwt_header bad = {.alg = JWT_RS256, .kid = "\xff"};
  cr_assert_null(jwt_header_json(&bad), "invalid UTF-8 is refused");
}

Test(jwt, claims_of_both_grants) {
  jwt_claims c;
  jwt_sa_claims(&c, "sa@p.iam.gserviceaccount.com", "scan@example.com",
                "https://oauth2.googleapis.com/token", "https://mail.google.com/", 1700000000);
  char *s = jwt_claims_json(&c);
  cr_assert_str_eq(s, "{\"iss\":\"sa@p.iam.gserviceaccount.com\",\"sub\":\"scan@example.com\","
                      "\"aud\":\"https://oauth2.googleapis.com/token\",\"scope\":\"https://"
                      "mail.google.com/\",\"iat\":1700000000,\"exp\":1700003600}");
  free(s);
  cr_assert_leq(c.exp - c.iat, 3600, "Google: at most one hour");
  jwt_assertion_claims(&c, "app-1", "https://login.microsoftonline.com/t/oauth2/v2.0/token", "5f0c",
                       1700000000);
  s = jwt_claims_json(&c);
  cr_assert_str_eq(s, "{\"iss\":\"app-1\",\"sub\":\"app-1\",\"aud\":\"https://"
                      "login.microsoftonline.com/t/oauth2/v2.0/token\",\"jti\":\"5f0c\","
                      "\"iat\":1700000000,\"nbf\":1700000000,\"exp\":1700000600}");
  free(s);
  cr_assert_leq(c.exp - c.nbf, 600, "Entra: 5 to 10 minutes");
}

/* A signer that records what it was given and signs with "SIG". */
static char seen[512];
static int fake_sign(void *arg, jwt_alg alg, const unsigned char *in, size_t n, unsigned char *sig,
                     size_t cap, size_t *len) {
  cr_assert_eq(alg, JWT_PS256);
  cr_assert_lt(n, sizeof seen);
  memcpy(seen, in, n);
  seen[n] = '\0';
  cr_assert_geq(cap, 3);
  memcpy(sig, "SIG", 3);
  *len = 3;
  return *(int *)arg;
}

Test(jwt, build_signs_the_signing_input) {
  jwt_header h = {.alg = JWT_PS256, .x5t_s256 = "t"};
  jwt_claims c = {.iss = "a", .exp = 5};
  char *jwt;
  int ok = 0, fail = STP_EIO;
  cr_assert_eq(jwt_build(&h, &c, fake_sign, &ok, &jwt), 0);
  /* {"alg":"PS256","typ":"JWT","x5t#S256":"t"} . {"iss":"a","exp":5} . "SIG" */
  cr_assert_str_eq(seen, "eyJhbGciOiJQUzI1NiIsInR5cCI6IkpXVCIsIng1dCNTMjU2IjoidCJ9."
                         "eyJpc3MiOiJhIiwiZXhwIjo1fQ");
  cr_assert_eq(strlen(jwt), strlen(seen) + 5);
  cr_assert(!strncmp(jwt, seen, strlen(seen)));
  cr_assert_str_eq(jwt + strlen(seen), ".U0lH");
  stp_free_secret(jwt);
  cr_assert_eq(jwt_build(&h, &c, fake_sign, &fail, &jwt), STP_EIO, "the signer's error");
  cr_assert_null(jwt);
}

#define SA_KEY(extra)                                                                              \
  "{\"type\":\"service_account\",\"project_id\":\"p\",\"private_key_id\":\"kid-1\","               \
  "\"private_key\":\"-----BEGIN PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----\\n\","         \
  "\"client_email\":\"sa@p.iam.gserviceaccount.com\",\"client_id\":\"1234\"," extra                \
  "\"token_uri\":\"https://oauth2.googleapis.com/token\"}"

Test(jwt, service_account_key) {
  jwt_sa_key k;
  char err[200];
  const char *good = SA_KEY("");
  cr_assert_eq(jwt_sa_parse(good, strlen(good), &k, err, sizeof err), 0, "%s", err);
  cr_assert_str_eq(k.client_email, "sa@p.iam.gserviceaccount.com");
  cr_assert_str_eq(k.private_key_id, "kid-1");
  cr_assert_str_eq(k.private_key, "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n");
  cr_assert_str_eq(k.token_uri, "https://oauth2.googleapis.com/token");
  jwt_sa_free(&k);
  cr_assert_null(k.private_key);
}

Test(jwt, service_account_key_refusals) {
  static const struct {
    const char *json, *why;
  } cases[] = {
      {"[1]", "it is not a JSON object (expected Google's service-account JSON key)"},
      {"{\"a\":1", "it is not a JSON object (expected Google's service-account JSON key)"},
      {"{\"type\":\"authorized_user\"}", "its type is not \"service_account\""},
      {"{\"private_key\":\"k\",\"private_key_id\":\"i\",\"token_uri\":\"u\"}",
       "it has no client_email (expected Google's service-account JSON key)"},
      {"{\"client_email\":\"e\",\"private_key_id\":\"i\",\"token_uri\":\"u\"}",
       "it has no private_key (expected Google's service-account JSON key)"},
      {"{\"client_email\":\"e\",\"private_key\":\"k\",\"token_uri\":\"u\"}",
       "it has no private_key_id (expected Google's service-account JSON key)"},
      {"{\"client_email\":\"e\",\"private_key\":\"k\",\"private_key_id\":\"i\"}",
       "it has no token_uri (expected Google's service-account JSON key)"},
      {"{\"client_email\":5,\"private_key\":\"k\",\"private_key_id\":\"i\",\"token_uri\":\"u\"}",
       "it has no client_email (expected Google's service-account JSON key)"},
      {"{\"client_email\":\"e\",\"client_email\":\"f\"}",
       "it is not a JSON object (expected Google's service-account JSON key)"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    jwt_sa_key k;
    char err[200] = "";
    cr_assert_eq(jwt_sa_parse(cases[i].json, strlen(cases[i].json), &k, err, sizeof err),
                 STP_ESYNTAX, "case %zu", i);
    cr_assert_str_eq(err, cases[i].why, "case %zu", i);
    cr_assert_null(k.private_key);
    cr_assert_null(k.client_email);
  }
}
