/* provider_expect.h - what a device must get for each provider refusal,
 * written from the providers' own documentation, not from the product's
 * table (proxy/core/provider.c). The unit and the integration tests check
 * the product against this list, so a row flipped to the wrong class fails
 * a test, not only the README sync.
 *
 * The rule (SPEC "Provider fidelity"): a refusal an admin can fix (the
 * account, a console switch, a quota that resets, a busy server, TLS) is
 * 4xx so the device retries or the spool holds the message; a refusal of
 * the message itself, which fails the same way on every retry, is 5xx.
 */
#ifndef STP_TEST_PROVIDER_EXPECT_H
#define STP_TEST_PROVIDER_EXPECT_H

#include <stddef.h>
#include <string.h>

typedef struct provider_expect {
  const char *id;  /* the product row's id */
  int cls;         /* 4 or 5: the device's reply class */
  const char *enh; /* the device's enhanced status code */
  const char *why; /* the documentation behind the class */
} provider_expect;

static const provider_expect provider_expectations[] = {
    /* Microsoft: "Enable or disable SMTP AUTH in Exchange Online" and the
     * Basic auth deprecation pages: a tenant or mailbox setting. */
    {"m365-5.7.139-basic-auth-disabled", 4, "4.7.0", "tenant setting: SMTP AUTH / Basic auth"},
    {"m365-5.7.139-smtp-auth-disabled", 4, "4.7.0",
     "mailbox setting: SmtpClientAuthenticationDisabled"},
    {"m365-5.7.139-security-defaults", 4, "4.7.0", "Entra security defaults block legacy auth"},
    {"m365-5.7.139-bad-credentials", 4, "4.7.0", "the stored password is wrong"},
    {"m365-5.7.139-policy", 4, "4.7.0", "a Conditional Access / sign-in policy"},
    {"m365-5.7.30-basic-auth-retired", 4, "4.7.0",
     "Basic auth retired: move the upstream to OAuth"},
    {"m365-5.7.57-not-authenticated", 4, "4.7.0", "credentials or AUTH missing"},
    /* NDR 5.2.252 / 5.7.60: SendAs permission, fixed by rewrite or a grant. */
    {"m365-5.2.252-send-as-denied", 4, "4.7.0", "Send As permission or mail_from rewrite"},
    {"m365-5.7.60-no-send-as", 4, "4.7.0", "Send As permission or mail_from rewrite"},
    /* 550 5.6.11 SMTPSEND.BareLinefeedsAreIllegal: the message's own bytes;
     * the same message fails the same way on every retry. */
    {"m365-5.6.11-bare-lf", 5, "5.6.0", "the message itself"},
    {"m365-4.7.66-tls-too-old", 4, "4.7.0", "the upstream TLS settings"},
    {"m365-4.3.2-thread-limit", 4, "4.3.2", "concurrent connection limit: retry later"},
    {"m365-4.7.500-server-busy", 4, "4.7.500", "server busy: retry later"},
    /* Google: "Sign in with app passwords", "Gmail SMTP errors and codes". */
    {"gmail-5.7.9-app-password", 4, "4.7.0", "2-Step Verification needs an app password"},
    {"gmail-5.7.8-bad-credentials", 4, "4.7.0", "username and password not accepted"},
    {"gmail-xoauth2-400", 4, "4.7.0", "XOAUTH2 request refused: token or scope"},
    {"gmail-xoauth2-401", 4, "4.7.0", "XOAUTH2 token invalid or expired"},
    {"gmail-5.7.0-starttls-first", 4, "4.7.0", "upstream tls setting"},
    {"gmail-5.4.5-daily-limit", 4, "4.7.0", "daily sending limit: resets within 24 h"},
    {"gmail-4.7.0-try-later", 4, "4.7.0", "temporary rate limit"},
    {"gmail-5.5.4-helo-refused", 4, "4.7.0", "the EHLO name setting"},
    /* Amazon SES: "Email address is not verified", sending quota. */
    {"ses-identity-not-verified", 4, "4.7.0", "verify the identity in the SES console"},
    {"ses-throttling", 4, "4.7.0", "maximum send rate exceeded"},
    /* SendGrid: Sender Identity; Mailgun: domain/account activation. */
    {"sendgrid-sender-identity", 4, "4.7.0", "verify a Sender Identity"},
    {"sendgrid-credits-exceeded", 4, "4.7.0", "plan credits exhausted"},
    {"mailgun-domain-not-verified", 4, "4.7.0", "verify the sending domain"},
    {"mailgun-account-not-activated", 4, "4.7.0", "activate the account"},
    /* TLS: a configuration or certificate matter on either side. */
    {"tls-peer-alert", 4, "4.7.0", "the upstream refused our TLS"},
    {"tls-certificate", 4, "4.7.0", "certificate verification (ca_file, server_name)"},
};

static inline const provider_expect *provider_expect_find(const char *id) {
  for (size_t i = 0; i < sizeof provider_expectations / sizeof *provider_expectations; i++)
    if (!strcmp(provider_expectations[i].id, id))
      return &provider_expectations[i];
  return NULL;
}

#endif
