/* test_provider.c - the provider fidelity table: every row is found by its
 * own recorded reply (and no earlier row shadows it), replies nobody
 * recorded keep today's behaviour, the device class follows the rule
 * "4xx unless the message is at fault", and the README's "When a provider
 * says no" table is exactly what the code prints. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider_expect.h"
#include "smtp-tls-proxy/provider.h"
#include "smtp-tls-proxy/smtp.h"
#include "smtp-tls-proxy/util.h"

/* A recorded reply ("534-5.7.9 ...\n534 5.7.9 ...") as the parser keeps it. */
static void parse_sample(const char *sample, smtp_reply *r) {
  memset(r, 0, sizeof *r);
  const char *p = sample;
  int rc = 0;
  while (*p) {
    size_t n = strcspn(p, "\n");
    rc = smtp_reply_feed(r, p, n);
    cr_assert_geq(rc, 0, "sample does not parse: %s", sample);
    p += n + (p[n] == '\n');
  }
  cr_assert_eq(rc, 1, "sample is not a complete reply: %s", sample);
}

Test(provider, every_row_is_found_by_its_sample_in_every_phase) {
  const provider_rule *rules;
  size_t n = provider_rules(&rules);
  cr_assert_geq(n, 20);
  for (size_t i = 0; i < n; i++) {
    const provider_rule *r = &rules[i];
    for (unsigned ph = 0; ph < PROV_NPHASES; ph++) {
      if (!(r->phases & PROV_BIT(ph)))
        continue;
      provider_verdict v;
      if (r->code == 0) {
        provider_classify_text(&v, (provider_phase)ph, r->sample);
      } else {
        smtp_reply rep;
        parse_sample(r->sample, &rep);
        cr_assert_eq(rep.code, r->code, "%s: sample code", r->id);
        provider_classify(&v, (provider_phase)ph, &rep);
      }
      cr_assert(v.rule == r, "%s in phase %s: matched %s", r->id,
                provider_phase_name((provider_phase)ph), v.rule ? v.rule->id : "nothing");
      cr_assert_eq(v.phase, ph);
    }
  }
}

Test(provider, rows_are_well_formed) {
  const provider_rule *rules;
  size_t n = provider_rules(&rules);
  for (size_t i = 0; i < n; i++) {
    const provider_rule *r = &rules[i];
    cr_assert(r->id && r->provider && r->phases && r->device_enh && r->device_text && r->reason &&
                  r->hint && r->sample,
              "row %zu incomplete", i);
    for (size_t j = 0; j < i; j++)
      cr_assert_str_neq(r->id, rules[j].id, "duplicate id %s", r->id);
    for (const char *p = r->reason; *p; p++)
      cr_assert((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_',
                "%s: reason word %s", r->id, r->reason);
    /* A hint lands in a log value and a Markdown table cell. */
    cr_assert_null(strpbrk(r->hint, "|\r\n"), "%s: hint", r->id);
    cr_assert_null(strpbrk(r->device_text, "\r\n"), "%s: device text", r->id);
    /* Before the connection is ready the device can only be told "later". */
    if (!r->temporary)
      cr_assert_eq(r->phases & PROV_PRE_READY, 0, "%s: 5xx before ready", r->id);
    cr_assert_eq(r->device_enh[0], r->temporary ? '4' : '5', "%s: enhanced class", r->id);
    cr_assert(r->code == 0 ? r->phases == PROV_BIT(PROV_TLS) : !(r->phases & PROV_BIT(PROV_TLS)),
              "%s: TLS rows have no code, others are not TLS", r->id);
  }
}

Test(provider, device_reply_class_and_syntax) {
  const provider_rule *rules;
  size_t n = provider_rules(&rules);
  for (size_t i = 0; i < n; i++) {
    for (unsigned ph = 0; ph < PROV_NPHASES; ph++) {
      if (!(rules[i].phases & PROV_BIT(ph)))
        continue;
      char line[256];
      provider_rule_device_reply(&rules[i], (provider_phase)ph, line, sizeof line);
      size_t len = strlen(line);
      cr_assert(len > 6 && !strcmp(line + len - 2, "\r\n"), "%s", line);
      cr_assert_lt(len, 512, "a reply line fits SMTP's limit");
      smtp_reply rep = {0};
      cr_assert_eq(smtp_reply_feed(&rep, line, len - 2), 1, "%s", line);
      const provider_expect *e = provider_expect_find(rules[i].id);
      cr_assert_not_null(e, "%s has no documented expectation", rules[i].id);
      cr_assert_eq(rep.code / 100, e->cls, "%s: %s (documented: %s)", rules[i].id, line, e->why);
      cr_assert_eq(strncmp(line + 4, e->enh, strlen(e->enh)), 0, "%s: %s, want %s", rules[i].id,
                   line, e->enh);
      cr_assert_gt(smtp_reply_enhanced(&rep), 0, "enhanced code in %s", line);
      if (ph == PROV_AUTH && rules[i].temporary)
        cr_assert_eq(rep.code, 454, "%s", line);
    }
  }
}

static const provider_rule *match(provider_phase ph, const char *line) {
  smtp_reply r;
  parse_sample(line, &r);
  provider_verdict v;
  provider_classify(&v, ph, &r);
  return v.rule;
}

Test(provider, unknown_replies_keep_todays_behaviour) {
  cr_assert_null(match(PROV_RCPT, "550 5.1.1 <nobody@example.com>: Recipient address rejected"));
  cr_assert_null(match(PROV_DOT, "552 5.3.4 Message size exceeds fixed maximum message size"));
  cr_assert_null(match(PROV_AUTH, "535 5.7.3 Authentication unsuccessful"));
  cr_assert_null(match(PROV_MAIL, "451 4.3.0 Temporary lookup failure"));
  /* Right words, wrong phase or code: not the row. */
  cr_assert_null(match(PROV_DOT, "535 5.7.139 Authentication unsuccessful, basic authentication "
                                 "is disabled."));
  cr_assert_null(match(PROV_AUTH, "550 Daily user sending limit exceeded"));
  /* The enhanced code must be exactly the row's. */
  cr_assert_null(match(PROV_AUTH, "535 5.7.1390 Authentication unsuccessful"));
  cr_assert_null(match(PROV_MAIL, "550 4.5.45 Daily user sending limit exceeded"));

  provider_verdict v;
  smtp_reply r;
  parse_sample("550 5.1.1 no such user", &r);
  provider_classify(&v, PROV_RCPT, &r);
  cr_assert_not(provider_temporary(&v), "an unknown 5xx reply stays 5xx");
  char buf[64];
  cr_assert_null(provider_device_reply(&v, buf, sizeof buf));
  parse_sample("451 4.3.0 try later", &r);
  provider_classify(&v, PROV_DOT, &r);
  cr_assert(provider_temporary(&v));
  parse_sample("535 5.7.3 Authentication unsuccessful", &r);
  provider_classify(&v, PROV_AUTH, &r);
  cr_assert(provider_temporary(&v), "a failure before ready is 4xx for the device");
  cr_assert_str_eq(v.reply, "535 5.7.3 Authentication unsuccessful");
}

Test(provider, matching_is_case_insensitive_and_ignores_line_breaks) {
  const provider_rule *r = match(PROV_AUTH, "535 5.7.139 AUTHENTICATION UNSUCCESSFUL, BASIC "
                                            "AUTHENTICATION IS DISABLED.");
  cr_assert_not_null(r);
  cr_assert_str_eq(r->reason, "basic_auth_disabled");
  /* Gmail splits its words over lines; the log gets them as one line. */
  smtp_reply rep;
  parse_sample("550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\n"
               "550 5.4.5 sending limits go to https://support.google.com/a/answer/166852",
               &rep);
  provider_verdict v;
  provider_classify(&v, PROV_DOT, &rep);
  cr_assert_not_null(v.rule);
  cr_assert_str_eq(v.rule->reason, "daily_limit");
  cr_assert_str_eq(v.reply, "550 5.4.5 Daily user sending limit exceeded. For more information "
                            "on Gmail 5.4.5 sending limits go to "
                            "https://support.google.com/a/answer/166852");
  cr_assert(provider_temporary(&v), "an admin-fixable 5xx becomes 4xx");
  char line[256];
  cr_assert_str_eq(provider_device_reply(&v, line, sizeof line),
                   "451 4.7.0 Upstream refused the message: the daily sending limit is reached "
                   "(Gmail), try again later\r\n");
}

Test(provider, message_at_fault_stays_5xx) {
  provider_verdict v;
  smtp_reply rep;
  parse_sample("550 5.6.11 SMTPSEND.BareLinefeedsAreIllegal; message contains bare linefeeds, "
               "which cannot be sent via DATA",
               &rep);
  provider_classify(&v, PROV_DOT, &rep);
  cr_assert_not_null(v.rule);
  cr_assert_not(provider_temporary(&v));
  char line[256];
  cr_assert_eq(strncmp(provider_device_reply(&v, line, sizeof line), "554 5.6.0 ", 10), 0, "%s",
               line);
}

Test(provider, xoauth2_challenge_decides_and_both_halves_are_logged) {
  smtp_reply fin;
  parse_sample("535-5.7.8 Username and Password not accepted. Learn more at\n"
               "535 5.7.8  https://support.google.com/mail/?p=BadCredentials x - gsmtp",
               &fin);
  provider_verdict v;
  /* {"status":"401","schemes":"bearer mac","scope":"https://mail.google.com/"}\n */
  provider_classify_xoauth2(&v,
                            "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3BlIjoiaHR0"
                            "cHM6Ly9tYWlsLmdvb2dsZS5jb20vIn0K",
                            &fin);
  cr_assert_not_null(v.rule);
  cr_assert_str_eq(v.rule->reason, "oauth2_token_invalid");
  cr_assert_not_null(strstr(v.reply, "334 {\"status\":\"401\",\"schemes\":\"bearer mac\""), "%s",
                     v.reply);
  cr_assert_not_null(strstr(v.reply, "; 535 5.7.8 Username and Password not accepted"), "%s",
                     v.reply);
  /* A challenge that is not base64: the final reply alone decides. */
  provider_classify_xoauth2(&v, "not base64!", &fin);
  cr_assert_not_null(v.rule);
  cr_assert_str_eq(v.rule->reason, "bad_credentials");
  cr_assert_null(provider_match(PROV_AUTH, 334, "eyJzdGF0dXMiOiI0MDAiLC"), "truncated base64");
}

Test(provider, tls_reason_text) {
  provider_verdict v;
  provider_classify_text(&v, PROV_TLS, "TLS handshake: peer sent TLS alert internal_error");
  cr_assert_not_null(v.rule);
  cr_assert_str_eq(v.rule->reason, "tls_peer_alert");
  provider_classify_text(&v, PROV_TLS, "TLS handshake: certificate verify failed: expired");
  cr_assert_str_eq(v.rule->reason, "certificate");
  provider_classify_text(&v, PROV_TLS, "TLS handshake: connection closed during TLS");
  cr_assert_null(v.rule);
  cr_assert(provider_temporary(&v));
}

/* The README table between its heading and the next heading, row by row,
 * must be what provider_readme_row() prints for the table, in order. */
Test(provider, readme_table_matches_the_code) {
  char path[1024];
  snprintf(path, sizeof path, "%s/README.md", STP_SOURCE_DIR);
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "%s", path);
  static char line[4096];
  bool in = false;
  size_t row = 0;
  const provider_rule *rules;
  size_t n = provider_rules(&rules);
  char want[4096];
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (!strncmp(line, "## ", 3)) {
      if (in)
        break;
      in = !strcmp(line, "## When a provider says no");
      continue;
    }
    if (!in || strncmp(line, "| ", 2) || !strncmp(line, "| provider |", 12))
      continue;
    cr_assert_lt(row, n, "README has an extra row: %s", line);
    provider_readme_row(&rules[row], want, sizeof want);
    cr_assert_str_eq(line, want, "README row %zu differs; the code says:\n%s", row, want);
    row++;
  }
  fclose(f);
  if (row < n) {
    /* Print what is missing so the README can be brought up to date. */
    for (size_t i = row; i < n; i++)
      fprintf(stderr, "%s\n", provider_readme_row(&rules[i], want, sizeof want));
  }
  cr_assert(in || row > 0, "README has no \"## When a provider says no\" section");
  cr_assert_eq(row, n, "README lists %zu of %zu rows (missing ones printed above)", row, n);
}

/* The documented list and the product's table name the same rows: a new
 * row needs its expectation written from the provider's documentation. */
Test(provider, every_row_has_an_independent_expectation) {
  const provider_rule *rules;
  size_t n = provider_rules(&rules);
  size_t ne = sizeof provider_expectations / sizeof *provider_expectations;
  for (size_t i = 0; i < n; i++)
    cr_expect_not_null(provider_expect_find(rules[i].id), "no expectation for %s", rules[i].id);
  for (size_t j = 0; j < ne; j++) {
    bool found = false;
    for (size_t i = 0; i < n; i++)
      found = found || !strcmp(rules[i].id, provider_expectations[j].id);
    cr_expect(found, "expectation %s names no row", provider_expectations[j].id);
  }
  cr_expect_eq(n, ne);
}
