/* lanauth.c - server side of AUTH PLAIN / LOGIN for LAN devices,
 * crypt(3) hash checks, and the choice of the hash that unknown user
 * names are checked against.
 *
 * Owns: the AUTH exchange with a device and the secrets it carries until
 * the session has used them. Guarantees: see lanauth.h. Every failure path
 * goes through fail(), which cleanses the struct before setting the reply,
 * so no early return can leave a password or decoded payload behind.
 */
#include "smtp-tls-proxy/lanauth.h"

#include <crypt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtp-tls-proxy/sasl.h"
#include "smtp-tls-proxy/util.h"

/* h->state */
enum {
  LS_IDLE = 0,
  LS_PLAIN, /* sent "334 ", waiting for the PLAIN message */
  LS_USER,  /* sent the Username: prompt */
  LS_PASS,  /* sent the Password: prompt */
  LS_DONE,  /* credentials complete */
};

#define R_SYNTAX "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n"
#define R_MECH "504 5.5.4 Unrecognized authentication type\r\n"
#define R_CANCEL "501 5.7.0 Authentication cancelled\r\n"
#define R_BASE64 "501 5.5.2 Cannot decode response\r\n"
#define R_MALFORMED "501 5.5.2 Malformed authentication data\r\n"
#define R_TOOLONG "501 5.5.2 Authentication data too long\r\n"
#define R_INVALID "535 5.7.8 Authentication credentials invalid\r\n"
#define R_STATE "503 5.5.1 No authentication exchange in progress\r\n"

void lanauth_init(lanauth *h) {
  memset(h, 0, sizeof *h);
  h->state = LS_IDLE;
}

void lanauth_reset(lanauth *h) {
  stp_cleanse(h, sizeof *h);
  lanauth_init(h);
}

static la_result fail(lanauth *h, const char *reply, const char *reason) {
  lanauth_reset(h);
  h->reply = reply;
  h->reason = reason;
  return LA_FAIL;
}

static la_result ask(lanauth *h, unsigned char state, const char *prompt) {
  h->state = state;
  h->reply = prompt;
  h->reason = NULL;
  return LA_REPLY;
}

static bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}

static size_t rtrim(const char *s, size_t n) {
  while (n > 0 && is_wsp(s[n - 1]))
    n--;
  return n;
}

/* Decode one response into h->buf. Returns its length, or -1 after fail(). */
static long decode(lanauth *h, const char *s, size_t n) {
  if (n == 1 && s[0] == '=')
    return 0;
  /* bounded before decoding: nothing valid is longer */
  if (n > sasl_b64_len(LANAUTH_PAYLOAD_MAX)) {
    fail(h, R_TOOLONG, "too-long");
    return -1;
  }
  long r = sasl_b64_decode(s, n, h->buf, sizeof h->buf);
  if (r < 0) {
    fail(h, R_BASE64, "base64");
    return -1;
  }
  if (r > LANAUTH_PAYLOAD_MAX) {
    fail(h, R_TOOLONG, "too-long");
    return -1;
  }
  return r;
}

static bool has_ctl(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] < 0x20 || p[i] == 0x7f)
      return true;
  return false;
}

static la_result done(lanauth *h, const unsigned char *user, size_t ul, const unsigned char *pass,
                      size_t pl) {
  if (user) {
    memcpy(h->user, user, ul);
    h->user[ul] = '\0';
    h->user_len = ul;
  }
  memcpy(h->pass, pass, pl);
  h->pass[pl] = '\0';
  h->pass_len = pl;
  stp_cleanse(h->buf, sizeof h->buf);
  h->state = LS_DONE;
  h->reply = NULL;
  h->reason = NULL;
  return LA_DONE;
}

/* RFC 4616: [authzid] NUL authcid NUL passwd, in h->buf[0, n). */
static la_result plain_message(lanauth *h, size_t n) {
  const unsigned char *b = h->buf;
  const unsigned char *n1 = memchr(b, 0, n);
  const unsigned char *n2 = n1 ? memchr(n1 + 1, 0, n - (size_t)(n1 + 1 - b)) : NULL;
  if (!n2 || memchr(n2 + 1, 0, n - (size_t)(n2 + 1 - b)))
    return fail(h, R_MALFORMED, "malformed");
  size_t zl = (size_t)(n1 - b), ul = (size_t)(n2 - n1 - 1), pl = n - (size_t)(n2 + 1 - b);
  if (zl > LANAUTH_USER_MAX || ul > LANAUTH_USER_MAX || pl > LANAUTH_PASS_MAX)
    return fail(h, R_TOOLONG, "too-long");
  if (ul == 0 || pl == 0)
    return fail(h, R_INVALID, "empty");
  if (has_ctl(n1 + 1, ul))
    return fail(h, R_MALFORMED, "malformed");
  if (zl && (zl != ul || memcmp(b, n1 + 1, ul) != 0))
    return fail(h, R_INVALID, "authzid");
  return done(h, n1 + 1, ul, n2 + 1, pl);
}

static la_result login_user(lanauth *h, size_t n) {
  if (n == 0)
    return fail(h, R_INVALID, "empty");
  if (n > LANAUTH_USER_MAX)
    return fail(h, R_TOOLONG, "too-long");
  if (has_ctl(h->buf, n))
    return fail(h, R_MALFORMED, "malformed");
  memcpy(h->user, h->buf, n);
  h->user[n] = '\0';
  h->user_len = n;
  stp_cleanse(h->buf, sizeof h->buf);
  return ask(h, LS_PASS, LANAUTH_PROMPT_PASS);
}

static la_result login_pass(lanauth *h, size_t n) {
  if (n == 0)
    return fail(h, R_INVALID, "empty");
  if (n > LANAUTH_PASS_MAX)
    return fail(h, R_TOOLONG, "too-long");
  if (memchr(h->buf, 0, n))
    return fail(h, R_MALFORMED, "malformed");
  return done(h, NULL, 0, h->buf, n);
}

/* A response for the current state. */
static la_result respond(lanauth *h, const char *s, size_t n) {
  unsigned char state = h->state;
  long r = decode(h, s, n);
  if (r < 0)
    return LA_FAIL;
  switch (state) {
  case LS_PLAIN:
    return plain_message(h, (size_t)r);
  case LS_USER:
    return login_user(h, (size_t)r);
  case LS_PASS:
    return login_pass(h, (size_t)r);
  default:
    return fail(h, R_STATE, "state");
  }
}

la_result lanauth_start(lanauth *h, const char *arg, size_t len) {
  lanauth_reset(h);
  len = rtrim(arg, len);
  size_t i = 0;
  while (i < len && is_wsp(arg[i]))
    i++;
  size_t m = i;
  while (i < len && !is_wsp(arg[i]))
    i++;
  size_t mlen = i - m;
  if (mlen == 0)
    return fail(h, R_SYNTAX, "syntax");
  if (mlen == 5 && stp_ascii_ncasecmp(arg + m, "PLAIN", 5) == 0)
    h->mech = LA_MECH_PLAIN;
  else if (mlen == 5 && stp_ascii_ncasecmp(arg + m, "LOGIN", 5) == 0)
    h->mech = LA_MECH_LOGIN;
  else
    return fail(h, R_MECH, "mechanism");
  while (i < len && is_wsp(arg[i]))
    i++;
  size_t ir = i;
  while (i < len && !is_wsp(arg[i]))
    i++;
  if (i < len)
    return fail(h, R_SYNTAX, "syntax"); /* more than one argument */
  unsigned char first = h->mech == LA_MECH_PLAIN ? LS_PLAIN : LS_USER;
  if (ir == len)
    return ask(h, first, first == LS_PLAIN ? LANAUTH_PROMPT_PLAIN : LANAUTH_PROMPT_USER);
  h->state = first;
  return respond(h, arg + ir, len - ir);
}

la_result lanauth_step(lanauth *h, const char *line, size_t len) {
  if (h->state != LS_PLAIN && h->state != LS_USER && h->state != LS_PASS)
    return fail(h, R_STATE, "state");
  len = rtrim(line, len);
  if (len == 1 && line[0] == '*')
    return fail(h, R_CANCEL, "cancelled");
  return respond(h, line, len);
}

/* Compare two NUL-terminated strings in time that depends on the length
 * of `a` only, never on where they differ. */
static bool ct_streq(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  unsigned char d = (unsigned char)(la != lb);
  for (size_t i = 0; i < la; i++)
    d |= (unsigned char)(a[i] ^ (i < lb ? b[i] : 0));
  return d == 0;
}

bool lanauth_check_hash(const char *hash, const char *pass) {
  if (!hash || !*hash || !pass)
    return false;
  /* struct crypt_data is ~32 KiB: too big for a callback's stack */
  struct crypt_data *cd = stp_xcalloc(1, sizeof *cd);
  const char *out = crypt_r(pass, hash, cd);
  /* failure is NULL or a string starting with '*' ("*0", "*1"), which can
   * never equal a valid hash but could equal a bogus stored one */
  bool ok = out && out[0] != '*' && hash[0] != '*' && ct_streq(out, hash);
  stp_cleanse(cd, sizeof *cd);
  free(cd);
  return ok;
}

size_t lanauth_hash_params_len(const char *hash) {
  size_t n = strlen(hash);
  /* bcrypt: "$2b$NN$" then salt and hash with no '$' between them */
  if (n >= 7 && hash[0] == '$' && hash[1] == '2' && hash[3] == '$' && hash[6] == '$')
    return 7;
  const char *last = strrchr(hash, '$'); /* before the hash */
  if (!last || last == hash)
    return last ? 1 : 0;
  const char *salt = last; /* the '$' before the salt */
  while (salt > hash && *--salt != '$')
    ;
  return (size_t)(salt - hash) + 1;
}

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool same_params(const char *a, const char *b) {
  size_t la = lanauth_hash_params_len(a);
  return la == lanauth_hash_params_len(b) && memcmp(a, b, la) == 0;
}

size_t lanauth_costliest_hash(const char *const *hashes, size_t n) {
  size_t i = 1;
  while (i < n && same_params(hashes[0], hashes[i]))
    i++;
  if (i >= n)
    return 0; /* one class: nothing to time */
  size_t best = 0;
  uint64_t best_ns = 0;
  for (i = 0; i < n; i++) {
    bool seen = false;
    for (size_t j = 0; j < i && !seen; j++)
      seen = same_params(hashes[j], hashes[i]);
    if (seen)
      continue;
    uint64_t t0 = thread_cpu_ns();
    (void)lanauth_check_hash(hashes[i], "unknown-user cost probe");
    uint64_t dt = thread_cpu_ns() - t0;
    if (dt > best_ns) {
      best_ns = dt;
      best = i;
    }
  }
  return best;
}
