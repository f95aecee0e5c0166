/* lanauth.h - the server side of SMTP AUTH (RFC 4954) for LAN devices:
 * PLAIN (RFC 4616) and LOGIN, and crypt(3) hash checks for `auth: users`.
 *
 * Owns: turning an AUTH command and its continuation lines into a user
 * name and password, and every reply line of that exchange.
 * Guarantees: pure (no I/O, no allocation); input is bounded before it is
 * decoded; the decoded payload is cleansed as soon as user and password
 * have been copied out, and lanauth_reset() cleanses the whole struct, so
 * after it no secret remains. On LA_FAIL the password is already gone.
 *
 * Choices:
 *  - PLAIN: "authzid NUL authcid NUL passwd", exactly two NULs. An authzid
 *    that is not empty and not equal to authcid asks to act as someone
 *    else, which the proxy cannot grant: 535 5.7.8.
 *  - User and password must be non-empty (RFC 4616 1*SAFE), at most 255
 *    bytes, without NUL; the user name also without control characters
 *    (it is logged and matched by routes). Empty: 535 5.7.8; too long:
 *    501 5.5.2.
 *  - A PLAIN payload cannot be longer than 255 + 1 + 255 + 1 + 255 bytes
 *    (LANAUTH_PAYLOAD_MAX) and anything longer is refused before it is
 *    decoded (501 5.5.2), whatever the line length the session allowed.
 *  - "=" is an empty response, as the initial response (RFC 4954) and, for
 *    lenient devices, as a continuation line. Trailing SP/HTAB on the
 *    initial response and continuation lines are ignored; anything else
 *    that is not strict base64 is 501 5.5.2.
 *  - LOGIN takes an initial response as the user name (common in devices;
 *    draft-murchison-sasl-login) and then asks only for the password.
 */
#ifndef STP_LANAUTH_H
#define STP_LANAUTH_H

#include <stdbool.h>
#include <stddef.h>

#define LANAUTH_USER_MAX 255
#define LANAUTH_PASS_MAX 255
#define LANAUTH_PAYLOAD_MAX (2 * LANAUTH_USER_MAX + LANAUTH_PASS_MAX + 2)

typedef enum {
  LA_REPLY, /* send h->reply (e.g. "334 VXNlcm5hbWU6\r\n"), pass the next line to lanauth_step */
  LA_DONE,  /* credentials complete in h->user / h->pass; call lanauth_reset when done */
  LA_FAIL,  /* send h->reply (501/504/535 ...); h->reason is a word for the log */
} la_result;

typedef enum { LA_MECH_NONE = 0, LA_MECH_PLAIN, LA_MECH_LOGIN } la_mech;

typedef struct lanauth {
  unsigned char state; /* see lanauth.c; 0 = idle */
  la_mech mech;
  const char *reply;               /* static string, a whole line with CRLF */
  const char *reason;              /* on LA_FAIL: "syntax", "mechanism", "cancelled", "base64",
                                      "malformed", "too-long", "empty", "authzid", "state" */
  char user[LANAUTH_USER_MAX + 1]; /* NUL-terminated */
  size_t user_len;
  char pass[LANAUTH_PASS_MAX + 1]; /* NUL-terminated; a secret */
  size_t pass_len;
  unsigned char buf[LANAUTH_PAYLOAD_MAX + 1]; /* decoded payload; cleansed after each use */
} lanauth;

void lanauth_init(lanauth *h);
/* Cleanse everything (password, decoded bytes) and return to idle. */
void lanauth_reset(lanauth *h);

/* arg: what follows "AUTH " ("PLAIN", "login dXNlcg==", "PLAIN ="). Starts
 * a new exchange (any previous one is reset). Empty or malformed argument:
 * 501 5.5.4; a mechanism other than PLAIN/LOGIN: 504 5.5.4. */
la_result lanauth_start(lanauth *h, const char *arg, size_t len);
/* One continuation line, without its CRLF. "*" cancels: 501 5.7.0. */
la_result lanauth_step(lanauth *h, const char *line, size_t len);

/* The line sent for AUTH PLAIN without an initial response and the two
 * LOGIN prompts. */
#define LANAUTH_PROMPT_PLAIN "334 \r\n"
#define LANAUTH_PROMPT_USER "334 VXNlcm5hbWU6\r\n"
#define LANAUTH_PROMPT_PASS "334 UGFzc3dvcmQ6\r\n"

/* Check pass against a crypt(3) hash ("$6$", "$5$", "$y$", whatever
 * libcrypt supports) with crypt_r and a constant-time comparison of the
 * whole result. False for NULL/empty input and for hashes crypt_r cannot
 * handle. Slow by design (milliseconds): run it off the event loop if
 * that matters. */
bool lanauth_check_hash(const char *hash, const char *pass);

/* Length of the method and cost part of a crypt(3) hash, the text before
 * its salt: "$6$" or "$6$rounds=N$", "$2b$12$", "$y$j9T$". Hashes with
 * the same part cost the same to check. (scrypt "$7$" keeps its cost next
 * to the salt, so all "$7$" hashes are one class here.) */
size_t lanauth_hash_params_len(const char *hash);

/* Which of n configured hashes (n >= 1) costs the most to check: the index
 * of the hash an unknown user name is checked against, with the result
 * ignored, so that "no such user" takes as long as a wrong password. With
 * one method and cost among them that is 0 at once; otherwise the first
 * hash of each method and cost is checked once, timed in thread CPU time
 * (which scheduling does not inflate), and the slowest wins. */
size_t lanauth_costliest_hash(const char *const *hashes, size_t n);

#endif
