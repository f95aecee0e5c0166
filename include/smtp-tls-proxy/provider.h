/* provider.h - what mail providers really answer, and what the device and
 * the admin should get for it ("provider fidelity").
 *
 * Owns: the one table (provider.c) from a provider's refusal (the phase of
 * the dialogue, the reply code, the enhanced code and a text pattern) to
 * the class the device gets, a `reason=` word and a `hint=` naming the
 * setting or console page to change. Guarantees: pure; a refusal that no
 * row matches is left to today's behaviour (a failure before the upstream
 * was ready is a 4xx, a reply to MAIL/RCPT/DATA/dot is relayed as it is);
 * a matched refusal is 4xx for the device unless the message itself is at
 * fault (an admin can fix everything else, so the device retries and a
 * spool may hold the message). Provider text reaches the log only bounded
 * and with control bytes replaced (smtp.c already did that to replies).
 */
#ifndef STP_PROVIDER_H
#define STP_PROVIDER_H

#include <stdbool.h>
#include <stddef.h>

#include "smtp-tls-proxy/smtp.h"

/* Where in the upstream dialogue a reply came. */
typedef enum {
  PROV_GREETING = 0,
  PROV_EHLO,
  PROV_STARTTLS,
  PROV_TLS, /* the handshake; "code" 0, the text is the TLS layer's reason */
  PROV_AUTH,
  PROV_MAIL,
  PROV_RCPT,
  PROV_DATA,
  PROV_DOT,
  PROV_NPHASES
} provider_phase;

#define PROV_BIT(p) (1u << (p))
/* Phases before the connection is ready: any refusal there is a failure of
 * the connection (failover, back-off), never a reply the device sees. */
#define PROV_DIALOGUE                                                                              \
  (PROV_BIT(PROV_GREETING) | PROV_BIT(PROV_EHLO) | PROV_BIT(PROV_STARTTLS) | PROV_BIT(PROV_AUTH))
#define PROV_PRE_READY (PROV_DIALOGUE | PROV_BIT(PROV_TLS))
#define PROV_TXN                                                                                   \
  (PROV_BIT(PROV_MAIL) | PROV_BIT(PROV_RCPT) | PROV_BIT(PROV_DATA) | PROV_BIT(PROV_DOT))

typedef struct provider_rule {
  const char *id;       /* stable name: the replay dialogue and test name */
  const char *provider; /* "Microsoft 365", "Gmail", ... */
  unsigned phases;      /* PROV_BIT() mask */
  int code;             /* reply code; 0 for PROV_TLS rows */
  const char *enhanced; /* "5.7.139", or NULL when the provider sends none */
  /* Case-insensitive substring of the reply text (codes removed, lines
   * joined); for a 334 XOAUTH2 challenge, of its base64-decoded JSON. NULL:
   * any text. */
  const char *pattern;
  bool temporary;          /* the device gets 4xx (else 5xx: the message is at fault) */
  const char *device_enh;  /* enhanced code for the device, e.g. "4.7.0" */
  const char *device_text; /* what the device reads after the codes */
  const char *reason;      /* the log's and the metric's reason= word */
  const char *hint;        /* the fix, naming the setting or console page */
  /* A recorded reply as the provider sends it ("\n" between lines of a
   * multi-line reply, each line with its code), and where it was seen;
   * source NULL: not confirmed from a public source. */
  const char *sample;
  const char *source;
} provider_rule;

#define PROVIDER_REPLY_MAX 400 /* provider words kept for the log */

/* A classified refusal: the row that matched (NULL: none) and the
 * provider's own words, one line, for provider_reply="...". */
typedef struct provider_verdict {
  const provider_rule *rule;
  provider_phase phase;
  int code;
  char reply[PROVIDER_REPLY_MAX + 1];
} provider_verdict;

/* The table, in matching order (first match wins). */
size_t provider_rules(const provider_rule **rules);
const char *provider_phase_name(provider_phase p);

/* The first row for this phase, code and text (text as smtp_reply keeps
 * it: codes removed, lines joined by '\n'); NULL when none matches. For a
 * 334 the text is the base64 challenge: it is decoded before matching. */
const provider_rule *provider_match(provider_phase phase, int code, const char *text);
/* Classify a reply: fills *v (rule may stay NULL) with the provider's words
 * as one line ("535 5.7.139 Authentication unsuccessful, ..."). */
void provider_classify(provider_verdict *v, provider_phase phase, const smtp_reply *r);
/* The same for a failure that has no reply (TLS): `text` is its reason. */
void provider_classify_text(provider_verdict *v, provider_phase phase, const char *text);
/* XOAUTH2 (RFC-less, Google and Microsoft): a 334 whose base64 text is a
 * JSON error, then the final reply to the empty line that answers it.
 * `challenge` is the 334's text; r the final reply. The challenge decides
 * the row (its JSON "status" is the only precise word in the exchange). */
void provider_classify_xoauth2(provider_verdict *v, const char *challenge, const smtp_reply *r);

/* Whether the device gets a temporary (4xx) reply for this refusal: the
 * row's class, or for an unmatched one today's rule (4xx before the
 * connection was ready; the reply's own class after). What a spool keys
 * its decision on. */
bool provider_temporary(const provider_verdict *v);
/* The device's reply line for a matched row ("454 4.7.0 ..., try again
 * later\r\n"), into buf; returns buf, or NULL when v->rule is NULL. */
const char *provider_device_reply(const provider_verdict *v, char *buf, size_t cap);
/* The same for a row at a given phase, without a verdict (README, tests). */
const char *provider_rule_device_reply(const provider_rule *r, provider_phase phase, char *buf,
                                       size_t cap);
/* Where the row is usually met: its first transaction phase, else its
 * first phase (for the README). */
provider_phase provider_rule_typical_phase(const provider_rule *r);

/* The one log line for a matched refusal inside a transaction,
 * "upstream-refused" with reason=, the provider's words and hint= (and the
 * metric): for a device's message (client set) and for a spooled one (id
 * set) alike. v->rule must be set. */
void provider_log_refusal(const char *sid, const char *upstream, const char *client, const char *id,
                          const provider_verdict *v);

/* The README's "When a provider says no" row for r (no newline). */
const char *provider_readme_row(const provider_rule *r, char *buf, size_t cap);

#endif
