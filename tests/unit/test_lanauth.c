/* test_lanauth.c - server side AUTH PLAIN/LOGIN: exchanges, cancel,
 * malformed base64, limits, NUL placement, cleansing, crypt(3) checks. */
#include <criterion/criterion.h>
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "smtp-tls-proxy/lanauth.h"
#include "smtp-tls-proxy/sasl.h"
#include "smtp-tls-proxy/util.h"

#define L(s) s, sizeof(s) - 1

#define R_SYNTAX "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
#define R_MECH "504 5.5.4 Unrecognized authentication type\r\n"
#define R_CANCEL "501 5.7.0 Authentication cancelled\r\n"
#define R_BASE64 "501 5.5.2 Cannot decode response\r\n"
#define R_MALFORMED "501 5.5.2 Malformed authentication data\r\n"
#define R_TOOLONG "501 5.5.2 Authentication data too long\r\n"
#define R_INVALID "535 5.7.8 Authentication credentials invalid\r\n"
#define R_STATE "503 5.5.1 No authentication exchange in progress\r\n"

/* base64 of raw bytes, in a static buffer (one use at a time) */
static const char *b64(const void *raw, size_t n) {
  static char out[4096];
  long r = sasl_b64_encode(raw, n, out, sizeof out);
  cr_assert_geq(r, 0);
  return out;
}
#define B64(s) b64(s, sizeof(s) - 1)

static la_result start(lanauth *h, const char *arg) {
  return lanauth_start(h, arg, strlen(arg));
}
static la_result step(lanauth *h, const char *line) {
  return lanauth_step(h, line, strlen(line));
}
static la_result start_with(lanauth *h, const char *mech, const char *ir) {
  char arg[2048];
  snprintf(arg, sizeof arg, "%s %s", mech, ir);
  return start(h, arg);
}

static void assert_fail(lanauth *h, la_result r, const char *reply, const char *reason) {
  cr_assert_eq(r, LA_FAIL);
  cr_assert_str_eq(h->reply, reply);
  cr_assert_str_eq(h->reason, reason);
  static const char zeros[LANAUTH_PAYLOAD_MAX + 1];
  cr_assert(memcmp(h->pass, zeros, sizeof h->pass) == 0, "no password after a failure");
  cr_assert(memcmp(h->buf, zeros, sizeof h->buf) == 0, "no payload after a failure");
  cr_assert_eq(h->user_len, 0);
  cr_assert_eq(h->pass_len, 0);
}

static void assert_done(lanauth *h, la_result r, const char *user, const char *pass) {
  cr_assert_eq(r, LA_DONE, "reply %s", h->reply ? h->reply : "(none)");
  cr_assert_str_eq(h->user, user);
  cr_assert_eq(h->user_len, strlen(user));
  cr_assert_str_eq(h->pass, pass);
  cr_assert_eq(h->pass_len, strlen(pass));
  static const char zeros[sizeof h->buf];
  cr_assert(memcmp(h->buf, zeros, sizeof h->buf) == 0, "payload cleansed once copied");
}

Test(lanauth, plain_with_initial_response) {
  lanauth h;
  lanauth_init(&h);
  assert_done(&h, start_with(&h, "PLAIN", B64("\0scanner1\0s3cret")), "scanner1", "s3cret");
  assert_done(&h, start_with(&h, "plain", B64("scanner1\0scanner1\0s3cret")), "scanner1", "s3cret");
  lanauth_reset(&h);
}

Test(lanauth, plain_without_initial_response) {
  lanauth h;
  lanauth_init(&h);
  cr_assert_eq(start(&h, "PLAIN"), LA_REPLY);
  cr_assert_str_eq(h.reply, "334 \r\n");
  assert_done(&h, step(&h, B64("\0dev\0pw")), "dev", "pw");
  lanauth_reset(&h);
}

Test(lanauth, plain_authzid_must_be_empty_or_the_user) {
  lanauth h;
  lanauth_init(&h);
  assert_fail(&h, start_with(&h, "PLAIN", B64("admin\0dev\0pw")), R_INVALID, "authzid");
  assert_fail(&h, start_with(&h, "PLAIN", B64("Dev\0dev\0pw")), R_INVALID, "authzid");
  assert_fail(&h, start_with(&h, "PLAIN", B64("devx\0dev\0pw")), R_INVALID, "authzid");
}

Test(lanauth, nul_bytes_in_wrong_places) {
  lanauth h;
  lanauth_init(&h);
  assert_fail(&h, start_with(&h, "PLAIN", B64("user\0")), R_MALFORMED, "malformed");
  assert_fail(&h, start_with(&h, "PLAIN", B64("\0user")), R_MALFORMED, "malformed");
  assert_fail(&h, start_with(&h, "PLAIN", B64("userpass")), R_MALFORMED, "malformed");
  assert_fail(&h, start_with(&h, "PLAIN", B64("\0user\0pass\0")), R_MALFORMED, "malformed");
  assert_fail(&h, start_with(&h, "PLAIN", B64("\0us\0er\0pass")), R_MALFORMED, "malformed");
  assert_fail(&h, start_with(&h, "PLAIN", B64("\0\0\0")), R_MALFORMED, "malformed");
  assert_fail(&h, start_with(&h, "PLAIN", B64("\0\0pass")), R_INVALID, "empty");
  assert_fail(&h, start_with(&h, "PLAIN", B64("\0user\0")), R_INVALID, "empty");
  assert_fail(&h, start_with(&h, "PLAIN", B64("\0us\r\ner\0pass")), R_MALFORMED, "malformed");
  /* LOGIN fields cannot hold a NUL either */
  assert_fail(&h, start_with(&h, "LOGIN", B64("us\0er")), R_MALFORMED, "malformed");
  cr_assert_eq(start(&h, "LOGIN"), LA_REPLY);
  cr_assert_eq(step(&h, B64("user")), LA_REPLY);
  assert_fail(&h, step(&h, B64("pa\0ss")), R_MALFORMED, "malformed");
  /* 8-bit user names are fine, control characters are not */
  assert_done(&h, start_with(&h, "PLAIN", B64("\0J\xc3\xb6rg\0pw")), "J\xc3\xb6rg", "pw");
  assert_fail(&h, start_with(&h, "LOGIN", B64("a\x7f")), R_MALFORMED, "malformed");
}

Test(lanauth, empty_response) {
  lanauth h;
  lanauth_init(&h);
  /* "=" is a zero-length initial response: no NULs for PLAIN */
  assert_fail(&h, start(&h, "PLAIN ="), R_MALFORMED, "malformed");
  /* ... and an empty user name for LOGIN */
  assert_fail(&h, start(&h, "LOGIN ="), R_INVALID, "empty");
  /* empty continuation lines, as "" and as "=" */
  cr_assert_eq(start(&h, "PLAIN"), LA_REPLY);
  assert_fail(&h, step(&h, ""), R_MALFORMED, "malformed");
  cr_assert_eq(start(&h, "PLAIN"), LA_REPLY);
  assert_fail(&h, step(&h, "="), R_MALFORMED, "malformed");
  cr_assert_eq(start(&h, "LOGIN"), LA_REPLY);
  assert_fail(&h, step(&h, ""), R_INVALID, "empty");
  cr_assert_eq(start(&h, "LOGIN"), LA_REPLY);
  cr_assert_eq(step(&h, B64("user")), LA_REPLY);
  assert_fail(&h, step(&h, "="), R_INVALID, "empty");
}

Test(lanauth, login_with_both_prompts) {
  lanauth h;
  lanauth_init(&h);
  cr_assert_eq(start(&h, "LOGIN"), LA_REPLY);
  cr_assert_str_eq(h.reply, "334 VXNlcm5hbWU6\r\n");
  cr_assert_eq(step(&h, B64("scanner1")), LA_REPLY);
  cr_assert_str_eq(h.reply, "334 UGFzc3dvcmQ6\r\n");
  cr_assert_str_eq(h.user, "scanner1");
  assert_done(&h, step(&h, B64("s3cret")), "scanner1", "s3cret");
  cr_assert_eq(h.mech, LA_MECH_LOGIN);
  lanauth_reset(&h);
}

Test(lanauth, login_with_user_in_initial_response) {
  lanauth h;
  lanauth_init(&h);
  cr_assert_eq(start(&h, "login dXNlcg=="), LA_REPLY);
  cr_assert_str_eq(h.reply, "334 UGFzc3dvcmQ6\r\n");
  cr_assert_str_eq(h.user, "user");
  assert_done(&h, step(&h, B64("pw")), "user", "pw");
}

Test(lanauth, trailing_spaces_are_trimmed) {
  lanauth h;
  lanauth_init(&h);
  cr_assert_eq(start(&h, "LOGIN dXNlcg==  \t"), LA_REPLY);
  assert_done(&h, step(&h, "cHc= "), "user", "pw");
  cr_assert_eq(start(&h, "LOGIN "), LA_REPLY);
  cr_assert_str_eq(h.reply, "334 VXNlcm5hbWU6\r\n");
  cr_assert_eq(step(&h, "dXNlcg==\t "), LA_REPLY);
  assert_done(&h, step(&h, "cHc=  "), "user", "pw");
  cr_assert_eq(start(&h, "PLAIN   AHUAcA==   "), LA_DONE);
  cr_assert_str_eq(h.user, "u");
  cr_assert_eq(start(&h, "PLAIN"), LA_REPLY);
  cr_assert_eq(step(&h, "* "), LA_FAIL, "a cancel with a trailing space is still a cancel");
  cr_assert_str_eq(h.reply, R_CANCEL);
}

Test(lanauth, cancel_at_each_step) {
  lanauth h;
  lanauth_init(&h);
  cr_assert_eq(start(&h, "PLAIN"), LA_REPLY);
  assert_fail(&h, step(&h, "*"), R_CANCEL, "cancelled");

  cr_assert_eq(start(&h, "LOGIN"), LA_REPLY);
  assert_fail(&h, step(&h, "*"), R_CANCEL, "cancelled");

  cr_assert_eq(start(&h, "LOGIN"), LA_REPLY);
  cr_assert_eq(step(&h, B64("user")), LA_REPLY);
  assert_fail(&h, step(&h, "*"), R_CANCEL, "cancelled");
  cr_assert_str_eq(h.user, "", "the user name is forgotten too");

  cr_assert_eq(start(&h, "LOGIN dXNlcg=="), LA_REPLY);
  assert_fail(&h, step(&h, "*"), R_CANCEL, "cancelled");

  /* the exchange is over: further lines are not AUTH data */
  assert_fail(&h, step(&h, B64("pw")), R_STATE, "state");
}

Test(lanauth, malformed_base64_everywhere) {
  static const char *bad[] = {
      "dXN!",        "dXNl-g==", "dXNl_g==", "dXNlcg=",   "dXNlcg===",  "dX=lcg==",   "=dXN",
      "==",          "dXNlc",    "dXN",      " dXNlcg==", "\tdXNlcg==", "dXNl\rcg==", "dXNl\ncg",
      "dXNl\x80g==", "**",       "*x",       "dXNlcg==*", "Zg==Zg==",
  };
  lanauth h;
  lanauth_init(&h);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *s = bad[i];
    /* PLAIN and LOGIN initial responses (no inner white space there: that
     * is a second argument, tested below) */
    if (!strpbrk(s, " \t")) {
      assert_fail(&h, start_with(&h, "PLAIN", s), R_BASE64, "base64");
      assert_fail(&h, start_with(&h, "LOGIN", s), R_BASE64, "base64");
    }
    cr_assert_eq(start(&h, "PLAIN"), LA_REPLY);
    assert_fail(&h, step(&h, s), R_BASE64, "base64");
    cr_assert_eq(start(&h, "LOGIN"), LA_REPLY);
    assert_fail(&h, step(&h, s), R_BASE64, "base64");
    cr_assert_eq(start(&h, "LOGIN"), LA_REPLY);
    cr_assert_eq(step(&h, B64("user")), LA_REPLY);
    assert_fail(&h, step(&h, s), R_BASE64, "base64");
  }
  /* inner white space in a continuation line is malformed base64 */
  cr_assert_eq(start(&h, "PLAIN"), LA_REPLY);
  assert_fail(&h, step(&h, "AHUA cA=="), R_BASE64, "base64");
}

Test(lanauth, command_syntax_and_mechanisms) {
  lanauth h;
  lanauth_init(&h);
  assert_fail(&h, start(&h, ""), R_SYNTAX, "syntax");
  assert_fail(&h, start(&h, "   "), R_SYNTAX, "syntax");
  assert_fail(&h, start(&h, "PLAIN AHUA cA=="), R_SYNTAX, "syntax");
  assert_fail(&h, start(&h, "LOGIN dXNlcg== extra"), R_SYNTAX, "syntax");
  assert_fail(&h, start(&h, "CRAM-MD5"), R_MECH, "mechanism");
  assert_fail(&h, start(&h, "XOAUTH2 dXNlcg=="), R_MECH, "mechanism");
  assert_fail(&h, start(&h, "PLAINX"), R_MECH, "mechanism");
  assert_fail(&h, start(&h, "PLAI"), R_MECH, "mechanism");
  cr_assert_eq(lanauth_start(&h, "PLAIN", 4), LA_FAIL, "length, not NUL, ends the argument");
  cr_assert_str_eq(h.reply, R_MECH);
  cr_assert_eq(start(&h, "Plain"), LA_REPLY);
  cr_assert_eq(h.mech, LA_MECH_PLAIN);
}

Test(lanauth, step_without_exchange) {
  lanauth h;
  lanauth_init(&h);
  assert_fail(&h, step(&h, B64("x")), R_STATE, "state");
  assert_done(&h, start_with(&h, "PLAIN", B64("\0u\0p")), "u", "p");
  cr_assert_eq(step(&h, B64("\0u\0p")), LA_FAIL);
  cr_assert_str_eq(h.reply, R_STATE);
}

static char *repeat(char c, size_t n) {
  char *s = malloc(n + 1);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

Test(lanauth, user_and_password_limits) {
  lanauth h;
  lanauth_init(&h);
  char *u255 = repeat('u', 255), *u256 = repeat('u', 256);
  char *p255 = repeat('p', 255), *p256 = repeat('p', 256);
  char raw[1024];

  int n = snprintf(raw, sizeof raw, "%c%s%c%s", 0, u255, 0, p255);
  assert_done(&h, start_with(&h, "PLAIN", b64(raw, (size_t)n)), u255, p255);
  n = snprintf(raw, sizeof raw, "%c%s%c%s", 0, u256, 0, "p");
  assert_fail(&h, start_with(&h, "PLAIN", b64(raw, (size_t)n)), R_TOOLONG, "too-long");
  n = snprintf(raw, sizeof raw, "%c%s%c%s", 0, "u", 0, p256);
  assert_fail(&h, start_with(&h, "PLAIN", b64(raw, (size_t)n)), R_TOOLONG, "too-long");

  cr_assert_eq(start_with(&h, "LOGIN", b64(u255, 255)), LA_REPLY);
  assert_done(&h, step(&h, b64(p255, 255)), u255, p255);
  assert_fail(&h, start_with(&h, "LOGIN", b64(u256, 256)), R_TOOLONG, "too-long");
  cr_assert_eq(start_with(&h, "LOGIN", "dQ=="), LA_REPLY);
  assert_fail(&h, step(&h, b64(p256, 256)), R_TOOLONG, "too-long");
  free(u255);
  free(u256);
  free(p255);
  free(p256);
}

Test(lanauth, payload_limit_exact_and_one_over) {
  cr_assert_eq(LANAUTH_PAYLOAD_MAX, 767);
  lanauth h;
  lanauth_init(&h);
  char *u = repeat('u', 255), *p = repeat('p', 255);
  char raw[800];
  /* authzid = authcid, both 255, password 255: exactly the limit */
  int n = snprintf(raw, sizeof raw, "%s%c%s%c%s", u, 0, u, 0, p);
  cr_assert_eq(n, LANAUTH_PAYLOAD_MAX);
  assert_done(&h, start_with(&h, "PLAIN", b64(raw, (size_t)n)), u, p);
  /* one over: refused for its size before its fields are looked at */
  n = snprintf(raw, sizeof raw, "%s%c%s%c%sp", u, 0, u, 0, p);
  cr_assert_eq(n, LANAUTH_PAYLOAD_MAX + 1);
  assert_fail(&h, start_with(&h, "PLAIN", b64(raw, (size_t)n)), R_TOOLONG, "too-long");
  cr_assert_eq(start(&h, "PLAIN"), LA_REPLY);
  assert_fail(&h, step(&h, b64(raw, (size_t)n)), R_TOOLONG, "too-long");
  /* the size is checked first, even for a payload malformed otherwise */
  memset(raw, 0, 3);
  memset(raw + 3, 'x', LANAUTH_PAYLOAD_MAX + 1 - 3);
  assert_fail(&h, start_with(&h, "PLAIN", b64(raw, LANAUTH_PAYLOAD_MAX + 1)), R_TOOLONG,
              "too-long");
  assert_fail(&h, start_with(&h, "PLAIN", b64(raw, LANAUTH_PAYLOAD_MAX)), R_MALFORMED, "malformed");
  /* longer base64 is refused without decoding, even when it is garbage */
  char *junk = repeat('!', 1028);
  cr_assert_eq(start(&h, "PLAIN"), LA_REPLY);
  assert_fail(&h, step(&h, junk), R_TOOLONG, "too-long");
  free(junk);
  /* a line of 12286 valid base64 bytes (the AUTH line limit) likewise */
  char *big = repeat('A', 12284);
  cr_assert_eq(start(&h, "LOGIN"), LA_REPLY);
  assert_fail(&h, step(&h, big), R_TOOLONG, "too-long");
  free(big);
  free(u);
  free(p);
}

Test(lanauth, reset_leaves_no_secret) {
  lanauth h;
  lanauth_init(&h);
  assert_done(&h, start_with(&h, "PLAIN", B64("\0scanner1\0hunter2hunter2")), "scanner1",
              "hunter2hunter2");
  lanauth_reset(&h);
  static const char zeros[sizeof(lanauth)];
  cr_assert(memcmp(h.pass, zeros, sizeof h.pass) == 0);
  cr_assert(memcmp(h.buf, zeros, sizeof h.buf) == 0);
  cr_assert(memcmp(h.user, zeros, sizeof h.user) == 0);
  cr_assert_eq(h.pass_len, 0);
  cr_assert_eq(memcmp(&h, zeros, sizeof h), 0, "the whole struct is zero");
  /* and the exchange is over */
  cr_assert_eq(step(&h, B64("x")), LA_FAIL);

  /* LOGIN: reset between the prompts forgets the user */
  cr_assert_eq(start(&h, "LOGIN"), LA_REPLY);
  cr_assert_eq(step(&h, B64("scanner1")), LA_REPLY);
  lanauth_reset(&h);
  cr_assert_eq(memcmp(&h, zeros, sizeof h), 0);
}

/* ---- crypt(3) ------------------------------------------------------------ */

static void random_salt(const char *prefix, char *out, size_t cap) {
  static const char alphabet[] = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  unsigned char rnd[16];
  cr_assert_eq(getrandom(rnd, sizeof rnd, 0), (ssize_t)sizeof rnd);
  size_t o = (size_t)snprintf(out, cap, "%s", prefix);
  for (size_t i = 0; i < sizeof rnd; i++)
    out[o++] = alphabet[rnd[i] % 64];
  out[o++] = '$';
  out[o] = '\0';
}

static char *hash_of(const char *pass, const char *setting) {
  struct crypt_data *cd = calloc(1, sizeof *cd);
  cr_assert_not_null(cd);
  char *r = crypt_r(pass, setting, cd);
  cr_assert(r && r[0] != '*', "crypt_r refused %s", setting);
  char *copy = strdup(r);
  free(cd);
  return copy;
}

static void check_scheme(const char *setting) {
  char *hash = hash_of("correct horse", setting);
  cr_assert(lanauth_check_hash(hash, "correct horse"), "%s", hash);
  cr_assert_not(lanauth_check_hash(hash, "correct horsE"));
  cr_assert_not(lanauth_check_hash(hash, "correct hors"));
  cr_assert_not(lanauth_check_hash(hash, ""));
  /* truncated or extended hashes must not verify */
  size_t n = strlen(hash);
  char *cut = strndup(hash, n - 1);
  cr_assert_not(lanauth_check_hash(cut, "correct horse"));
  free(cut);
  char *cut_salt = strndup(hash, (size_t)(strrchr(hash, '$') - hash));
  cr_assert_not(lanauth_check_hash(cut_salt, "correct horse"));
  free(cut_salt);
  char ext[512];
  snprintf(ext, sizeof ext, "%sA", hash);
  cr_assert_not(lanauth_check_hash(ext, "correct horse"));
  /* one character changed */
  hash[n - 1] = hash[n - 1] == 'A' ? 'B' : 'A';
  cr_assert_not(lanauth_check_hash(hash, "correct horse"));
  free(hash);
}

Test(lanauth, hash_sha512_random_salt) {
  char salt[64];
  random_salt("$6$", salt, sizeof salt);
  check_scheme(salt);
}

Test(lanauth, hash_sha256_random_salt) {
  char salt[64];
  random_salt("$5$", salt, sizeof salt);
  check_scheme(salt);
}

Test(lanauth, hash_yescrypt_when_supported) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  if (!crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof setting))
    cr_skip_test("libcrypt has no yescrypt");
  check_scheme(setting);
}

Test(lanauth, hash_unusable_inputs) {
  cr_assert_not(lanauth_check_hash(NULL, "x"));
  cr_assert_not(lanauth_check_hash("", "x"));
  cr_assert_not(lanauth_check_hash("$6$abc$def", NULL));
  cr_assert_not(lanauth_check_hash("*", "x"));
  cr_assert_not(lanauth_check_hash("*0", "x"), "crypt's failure token is not a hash");
  cr_assert_not(lanauth_check_hash("*1", "x"));
  cr_assert_not(lanauth_check_hash("!", "x"));
  cr_assert_not(lanauth_check_hash("!$6$abc$def", "x"));
  cr_assert_not(lanauth_check_hash("$6$", ""));
  cr_assert_not(lanauth_check_hash("$unknown$salt$hash", "x"));
}

/* ---- the hash unknown user names are checked against --------------------- */

static char *gensalt_hash(const char *prefix, unsigned long count) {
  char setting[CRYPT_GENSALT_OUTPUT_SIZE];
  cr_assert_not_null(crypt_gensalt_rn(prefix, count, NULL, 0, setting, sizeof setting),
                     "libcrypt cannot make a %s salt", prefix);
  return hash_of("a configured password", setting);
}

static void params_are(const char *hash, const char *want) {
  size_t n = lanauth_hash_params_len(hash);
  cr_assert(n == strlen(want) && strncmp(hash, want, n) == 0, "%s: params '%.*s', want '%s'", hash,
            (int)n, hash, want);
}

Test(lanauth, hash_params_are_method_and_cost) {
  params_are("$6$salt$hash", "$6$");
  params_are("$6$rounds=20000$salt$hash", "$6$rounds=20000$");
  params_are("$5$rounds=1000$s$h", "$5$rounds=1000$");
  params_are("$1$salt$hash", "$1$");
  params_are("$y$j9T$salt$hash", "$y$j9T$");
  params_are("$y$jCT$salt$hash", "$y$jCT$");
  params_are("$gy$j9T$salt$hash", "$gy$j9T$");
  params_are("$2b$12$abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234", "$2b$12$");
  params_are("$2y$05$abcdefghijklmnopqrstuvABCDEFGHIJKLMNOPQRSTUVWXYZ01234", "$2y$05$");
  /* made by libcrypt itself */
  char *y = gensalt_hash("$y$", 0);
  params_are(y, "$y$j9T$");
  free(y);
  char *b = gensalt_hash("$2b$", 6);
  params_are(b, "$2b$06$");
  free(b);
  char *s = gensalt_hash("$6$", 12345);
  params_are(s, "$6$rounds=12345$");
  free(s);
  /* nothing to split: no crash, a bounded answer */
  cr_assert_eq(lanauth_hash_params_len(""), 0);
  cr_assert_eq(lanauth_hash_params_len("$"), 1);
  cr_assert_leq(lanauth_hash_params_len("$6$"), 3);
}

/* One method and cost: the first hash, whatever the salts. */
Test(lanauth, costliest_of_one_class_is_the_first) {
  char *a = gensalt_hash("$y$", 0), *b = gensalt_hash("$y$", 0);
  const char *hs[] = {a, b};
  cr_assert_eq(lanauth_costliest_hash(hs, 2), 0);
  cr_assert_eq(lanauth_costliest_hash(hs, 1), 0);
  free(a);
  free(b);
}

/* Mixed methods or costs: the slowest class, with margins of 25x and more
 * in CPU time so that a busy machine cannot swap the order. */
static void costliest_is(const char *cheap_prefix, unsigned long cheap_count,
                         const char *costly_prefix, unsigned long costly_count) {
  char *cheap = gensalt_hash(cheap_prefix, cheap_count);
  char *costly = gensalt_hash(costly_prefix, costly_count);
  char *cheap2 = gensalt_hash(cheap_prefix, cheap_count);
  const char *first[] = {costly, cheap, cheap2};
  const char *middle[] = {cheap, costly, cheap2};
  const char *last[] = {cheap, cheap2, costly};
  cr_assert_eq(lanauth_costliest_hash(first, 3), 0, "%s vs %s", cheap, costly);
  cr_assert_eq(lanauth_costliest_hash(middle, 3), 1, "%s vs %s", cheap, costly);
  cr_assert_eq(lanauth_costliest_hash(last, 3), 2, "%s vs %s", cheap, costly);
  free(cheap);
  free(cheap2);
  free(costly);
}

Test(lanauth, costliest_sha512_rounds) {
  costliest_is("$6$", 1000, "$6$", 100000);
}

Test(lanauth, costliest_across_methods) {
  costliest_is("$6$", 1000, "$y$", 0);   /* sha512 0.5 ms vs yescrypt ~20 ms */
  costliest_is("$5$", 1000, "$2b$", 10); /* sha256 vs bcrypt 2^10 */
}

/* A hash libcrypt rejects at once is never picked over one it computes. */
Test(lanauth, costliest_skips_unusable_hashes) {
  char *y = gensalt_hash("$y$", 0);
  const char *hs[] = {"$unknown$salt$hash", "$y$j9T$x", "$2b$10$abc", y};
  cr_assert_eq(lanauth_costliest_hash(hs, 4), 3);
  free(y);
}
