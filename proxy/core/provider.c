/* provider.c - the provider fidelity table and its matcher (see provider.h).
 *
 * Owns: the table below, the only place that knows provider texts. Each row
 * carries a recorded reply (`sample`) and where it was seen (`source`; NULL
 * where no public source could confirm the exact words): the unit tests
 * match every row against its own sample, the integration tests replay
 * each one through the real proxy (tests/tools/replay_upstream.py), and a
 * unit test keeps the README's "When a provider says no" table equal to
 * what provider_readme_row() prints.
 *
 * Class rule: the device gets 4xx whenever an admin can fix the cause
 * (credentials, a console setting, a quota, a sender identity), so it
 * retries and a spool may hold the message; 5xx only where the message
 * itself is at fault.
 */
#include "smtp-tls-proxy/provider.h"

#include <stdio.h>
#include <string.h>

#include "smtp-tls-proxy/sasl.h"
#include "smtp-tls-proxy/util.h"

#define B(p) PROV_BIT(PROV_##p)
#define README_OAUTH "README: OAuth2 for Google and Microsoft 365"
#define SEND_AS_FIX                                                                                \
  "set the route's rewrite.mail_from and rewrite.header_from to the mailbox in auth.username, "    \
  "or grant that mailbox Send As on the sender (Exchange admin center > Recipients > Mailboxes > " \
  "the sender > Delegation)"

static const provider_rule rules[] = {
    /* ---- Microsoft 365 ------------------------------------------------ */
    {"m365-5.7.139-basic-auth-disabled", "Microsoft 365", B(AUTH), 535, "5.7.139",
     "basic authentication is disabled", true, "4.7.0",
     "Upstream authentication failed: Microsoft 365 has basic authentication turned off",
     "basic_auth_disabled",
     "Microsoft 365 takes no password for this mailbox: use auth.oauth2 with preset microsoft365 "
     "(" README_OAUTH ")",
     "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. "
     "[BM1P287CA0015.INDP287.PROD.OUTLOOK.COM]",
     "https://github.com/rpremraj/mailR/issues/107"},
    {"m365-5.7.139-smtp-auth-disabled", "Microsoft 365", B(AUTH), 535, "5.7.139",
     "SmtpClientAuthentication is disabled", true, "4.7.0",
     "Upstream authentication failed: SMTP AUTH is turned off for the Microsoft 365 tenant",
     "smtp_auth_disabled",
     "turn SMTP AUTH on for the tenant (Exchange admin center > Settings > Mail flow) and for the "
     "mailbox (Microsoft 365 admin center > Users > the user > Mail > Manage email apps > "
     "Authenticated SMTP); OAuth2 needs it too (" README_OAUTH ")",
     "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
     "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. "
     "[TY1PR01CA0183.jpnprd01.prod.outlook.com]",
     "https://github.com/nodemailer/nodemailer/issues/1484"},
    {"m365-5.7.139-security-defaults", "Microsoft 365", B(AUTH), 535, "5.7.139",
     "security defaults", true, "4.7.0",
     "Upstream authentication failed: Microsoft 365 security defaults block passwords",
     "security_defaults",
     "Entra ID security defaults block SMTP passwords: use auth.oauth2 with preset microsoft365 "
     "(" README_OAUTH ")",
     "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security "
     "defaults policy. Contact your administrator.",
     NULL},
    {"m365-5.7.139-bad-credentials", "Microsoft 365", B(AUTH), 535, "5.7.139",
     "credentials were incorrect", true, "4.7.0",
     "Upstream authentication failed: Microsoft 365 refused the user name or password",
     "bad_credentials",
     "check auth.username (the whole mailbox address) and the password in password_env or "
     "password_file",
     "535 5.7.139 Authentication unsuccessful, the user credentials were incorrect. "
     "[PH0PR07CA0004.namprd07.prod.outlook.com]",
     "https://github.com/codassassin/email-bomber-v2.0/issues/1"},
    {"m365-5.7.139-policy", "Microsoft 365", B(AUTH), 535, "5.7.139", NULL, true, "4.7.0",
     "Upstream authentication failed: Microsoft 365 refused the sign-in by policy",
     "sign_in_blocked",
     "Microsoft 365 refused the sign-in by policy (Conditional Access, security defaults, a "
     "disabled account): read the sign-in logs in Entra ID; auth.oauth2 with preset "
     "microsoft365 avoids password policies (" README_OAUTH ")",
     "535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be "
     "authenticated successfully. Contact your administrator. "
     "[MN2PR07CA0004.namprd07.prod.outlook.com]",
     "https://github.com/gophish/gophish/issues/3220 (the same reply, translated)"},
    {"m365-5.7.30-basic-auth-retired", "Microsoft 365", B(AUTH) | PROV_TXN, 550, "5.7.30",
     "Basic authentication is not supported", true, "4.7.0",
     "Upstream refused basic authentication (Microsoft 365 retired it for SMTP)",
     "basic_auth_retired",
     "Microsoft 365 no longer takes passwords for SMTP AUTH: use auth.oauth2 with preset "
     "microsoft365 (" README_OAUTH ")",
     "550 5.7.30 Basic authentication is not supported for Client Submission.",
     "https://www.captaindns.com/en/blog/microsoft-exchange-basic-auth-smtp-end"},
    {"m365-5.7.57-not-authenticated", "Microsoft 365", B(AUTH) | PROV_TXN, 530, "5.7.57",
     "not authenticated", true, "4.7.0",
     "Upstream refused the message: the proxy did not sign in to Microsoft 365",
     "not_authenticated",
     "give this upstream an auth: block (username and password_env, or auth.oauth2 with preset "
     "microsoft365, " README_OAUTH "), and turn Authenticated SMTP on for the mailbox",
     "530 5.7.57 Client not authenticated to send mail. [US22278CA0034.US7P278.PROD.OUTLOOK.COM]",
     "https://github.com/tarickb/sasl-xoauth2/issues/96"},
    {"m365-5.2.252-send-as-denied", "Microsoft 365", PROV_TXN, 554, "5.2.252", "SendAsDenied", true,
     "4.7.0", "Upstream refused the sender (Microsoft 365: not allowed to send as this address)",
     "send_as_denied", SEND_AS_FIX,
     "554 5.2.252 SendAsDenied; scanner@example.com not allowed to send as printer@example.com; "
     "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to "
     "process message due to a permanent exception with message [BeginDiagnosticData]Cannot "
     "submit message.",
     "https://github.com/gophish/gophish/issues/2900"},
    {"m365-5.7.60-no-send-as", "Microsoft 365", PROV_TXN, 550, "5.7.60",
     "does not have permissions to send as", true, "4.7.0",
     "Upstream refused the sender (Microsoft 365: no permission to send as this address)",
     "send_as_denied", SEND_AS_FIX,
     "550 5.7.60 SMTP; Client does not have permissions to send as this sender "
     "[MW2PR1901MB2155.namprd19.prod.outlook.com]",
     "https://github.com/swiftmailer/swiftmailer/issues/1030"},
    {"m365-5.6.11-bare-lf", "Microsoft 365", PROV_TXN, 550, "5.6.11", "BareLinefeedsAreIllegal",
     false, "5.6.0", "Upstream refused the message: it has bare line feeds (Microsoft 365)",
     "bare_lf",
     "the proxy ends every line it sends with CRLF, so another hop changed the message or this is "
     "a bug: report it with the message; the device gets 5xx because a retry fails the same way",
     "550 5.6.11 SMTPSEND.BareLinefeedsAreIllegal; message contains bare linefeeds, which cannot "
     "be sent via DATA",
     NULL},
    {"m365-4.7.66-tls-too-old", "Microsoft 365", PROV_DIALOGUE | PROV_TXN, 421, "4.7.66",
     "TLS 1.0 and 1.1 are not supported", true, "4.7.0",
     "Upstream refused the TLS version (Microsoft 365 needs TLS 1.2)", "tls_too_old",
     "the proxy never offers Microsoft 365 less than TLS 1.2, so a middlebox re-encrypts the "
     "connection (TLS inspection on a firewall or proxy): exempt smtp.office365.com from it",
     "421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support "
     "TLS 1.2. Visit https://aka.ms/smtp_auth_tls. [SA9P221CA0019.NAMP221.PROD.OUTLOOK.COM]",
     "https://github.com/zehm/sendEmail/issues/1"},
    {"m365-4.3.2-thread-limit", "Microsoft 365", PROV_TXN, 432, "4.3.2", "thread limit exceeded",
     true, "4.3.2", "Upstream is throttling the mailbox (Microsoft 365: too many connections)",
     "concurrency_limit",
     "Microsoft 365 allows 3 connections at once per mailbox: send through fewer connections "
     "(a route rate_limit, or fewer devices on this route)",
     "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded "
     "[Hostname=DM5SPR00MB2471.namprd08.prod.outlook.com]",
     "https://github.com/timeoff-management/timeoff-management-application/issues/308"},
    {"m365-4.7.500-server-busy", "Microsoft 365", PROV_DIALOGUE | PROV_TXN, 451, "4.7.500",
     "Server busy", true, "4.7.500", "Upstream is throttling this address (Microsoft 365 busy)",
     "throttled",
     "Microsoft 365 is throttling connections from this IP address (new or low reputation): it "
     "passes by itself; for steady volume use an inbound connector or High Volume Email",
     "451 4.7.500 Server busy. Please try again later from [192.0.2.10]. (S77719)",
     "https://github.com/MicrosoftDocs/OfficeDocs-Exchange/issues/2499"},
    /* ---- Gmail / Google Workspace ---------------------------------------- */
    {"gmail-5.7.9-app-password", "Gmail", B(AUTH), 534, "5.7.9",
     "Application-specific password required", true, "4.7.0",
     "Upstream authentication failed: Gmail wants an app password", "app_password_required",
     "the Google account has 2-Step Verification: create an app password "
     "(myaccount.google.com/apppasswords) for password_env or password_file, or use auth.oauth2 "
     "with preset google (" README_OAUTH ")",
     "534-5.7.9 Application-specific password required. For more information, go to\n"
     "534 5.7.9  https://support.google.com/mail/?p=InvalidSecondFactor "
     "ffacd0b85a97d-368119970e7sm1809147f8f.21 - gsmtp",
     "https://github.com/Der-Henning/tgtg/issues/517"},
    {"gmail-5.7.8-bad-credentials", "Gmail", B(AUTH), 535, "5.7.8",
     "Username and Password not accepted", true, "4.7.0",
     "Upstream authentication failed: Gmail refused the user name or password", "bad_credentials",
     "check auth.username (the whole address) and the password: Gmail takes an app password "
     "(myaccount.google.com/apppasswords) or auth.oauth2 with preset google (" README_OAUTH ")",
     "535-5.7.8 Username and Password not accepted. Learn more at\n"
     "535 5.7.8  https://support.google.com/mail/?p=BadCredentials y10sm11524926ejh.105 - gsmtp",
     "https://github.com/PHPMailer/PHPMailer/issues/2328"},
    {"gmail-xoauth2-400", "Gmail", B(AUTH), 334, NULL, "\"status\":\"400\"", true, "4.7.0",
     "Upstream authentication failed: Gmail refused the OAuth2 request", "oauth2_invalid_request",
     "the access token is not for auth.username or lacks the scope https://mail.google.com/: "
     "check auth.username and auth.oauth2 (" README_OAUTH ")",
     "334 eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xl"
     "LmNvbS8ifQ==",
     "https://github.com/mscdex/node-imap/issues/233"},
    {"gmail-xoauth2-401", "Gmail", B(AUTH), 334, NULL, "\"status\":\"401\"", true, "4.7.0",
     "Upstream authentication failed: Gmail refused the OAuth2 token", "oauth2_token_invalid",
     "the access token expired, was revoked or belongs to another client: check the refresh "
     "token and client of auth.oauth2 (" README_OAUTH ")",
     "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3BlIjoiaHR0cHM6Ly9tYWlsLmdv"
     "b2dsZS5jb20vIn0K",
     "https://developers.google.com/gmail/imap/xoauth2-protocol"},
    {"gmail-5.7.0-starttls-first", "Gmail", B(AUTH) | PROV_TXN, 530, "5.7.0",
     "Must issue a STARTTLS command first", true, "4.7.0",
     "Upstream refused the message: it needs TLS", "starttls_required",
     "the upstream is configured with tls: none: set tls: starttls (port 587) or tls: implicit "
     "(port 465)",
     "530 5.7.0 Must issue a STARTTLS command first. pe5sm5768337wjb.15 - gsmtp",
     "https://github.com/virtualzone/tubewarder/issues/29"},
    {"gmail-5.4.5-daily-limit", "Gmail", PROV_TXN, 550, "5.4.5", "Daily user sending", true,
     "4.7.0", "Upstream refused the message: the daily sending limit is reached (Gmail)",
     "daily_limit",
     "the Google account reached its daily sending limit (support.google.com/a/answer/166852): "
     "the device retries after the limit resets; spread the mail over more accounts or routes",
     "550-5.4.5 Daily user sending limit exceeded. For more information on Gmail\n"
     "550-5.4.5 sending limits go to\n"
     "550 5.4.5  https://support.google.com/a/answer/166852 "
     "d2e1a72fcca58-76e7d551493sm9728466b3a.112 - gsmtp",
     "https://github.com/woowacourse-teams/2025-ah-madda/issues/635"},
    {"gmail-4.7.0-try-later", "Gmail", PROV_DIALOGUE | PROV_TXN, 421, "4.7.0",
     "Try again later, closing connection", true, "4.7.0",
     "Upstream is limiting this connection (Gmail)", "rate_limited",
     "Gmail limits how fast one sender connects and sends, and dislikes unknown EHLO names: set "
     "helo: on the upstream to this host's real name and slow down with a route rate_limit",
     "421 4.7.0 Try again later, closing connection. (MAIL) g19sm112160pjl.25 - gsmtp",
     "https://github.com/datawookie/emayili/issues/71"},
    {"gmail-5.5.4-helo-refused", "Gmail", B(EHLO), 501, "5.5.4", "HELO/EHLO argument", true,
     "4.7.0", "Upstream refused the proxy's EHLO name", "helo_refused",
     "the upstream refused the EHLO name, also the address literal tried next: set helo: on the "
     "upstream (or hostname:) to this host's fully qualified name",
     "501-5.5.4 HELO/EHLO argument \"PhpStorm 9.0.3\" invalid, closing connection.\n"
     "501 5.5.4  https://support.google.com/mail/?p=helo - gsmtp",
     "https://github.com/PHPMailer/PHPMailer/issues/1011"},
    /* ---- Amazon SES ------------------------------------------------------ */
    {"ses-identity-not-verified", "Amazon SES", PROV_TXN, 554, NULL,
     "Email address is not verified", true, "4.7.0",
     "Upstream refused the sender (Amazon SES: address not verified)", "identity_not_verified",
     "verify the sender address or domain in the Amazon SES console of this region (Identities), "
     "or set the route's rewrite.mail_from and rewrite.header_from to a verified identity; in the "
     "SES sandbox every recipient must be verified too",
     "554 Message rejected: Email address is not verified. The following identities failed the "
     "check in region US-WEST-2: scanner@example.com",
     "https://github.com/sul-dlss/dlme/issues/813"},
    {"ses-throttling", "Amazon SES", B(AUTH) | PROV_TXN, 454, NULL, "Throttling failure", true,
     "4.7.0", "Upstream is throttling (Amazon SES sending rate)", "throttled",
     "the SES account sends faster than its quota allows: ask AWS for a higher sending rate "
     "(Service Quotas) or stay below it with a route rate_limit",
     "454 Throttling failure: Maximum sending rate exceeded.",
     "https://github.com/hackclub/hackathons-backend/issues/543"},
    /* ---- SendGrid -------------------------------------------------------- */
    {"sendgrid-sender-identity", "SendGrid", PROV_TXN, 550, NULL,
     "does not match a verified Sender Identity", true, "4.7.0",
     "Upstream refused the sender (SendGrid: no verified Sender Identity)",
     "sender_identity_not_verified",
     "verify the sender in SendGrid (Settings > Sender Authentication: a single sender or the "
     "domain), or set the route's rewrite.mail_from and rewrite.header_from to a verified sender",
     "550 The from address does not match a verified Sender Identity. Mail cannot be sent until "
     "this error is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/"
     "sender-identity/ to see the Sender Identity requirements",
     "https://github.com/sahat/hackathon-starter/issues/1083"},
    {"sendgrid-credits-exceeded", "SendGrid", B(AUTH) | PROV_TXN, 451, NULL,
     "Maximum credits exceeded", true, "4.7.0",
     "Upstream refused the message: the SendGrid plan's credits are used up", "credits_exceeded",
     "the SendGrid plan has no credits left for this period: upgrade it or wait for the renewal "
     "(Settings > Account Details)",
     "451 Authentication failed: Maximum credits exceeded",
     "https://github.com/mautic/mautic/issues/8721"},
    /* ---- Mailgun --------------------------------------------------------- */
    {"mailgun-domain-not-verified", "Mailgun", B(AUTH) | PROV_TXN, 421, NULL, "Domain not verified",
     true, "4.7.0", "Upstream refused the sender domain (Mailgun: domain not verified)",
     "domain_not_verified",
     "verify the sending domain in Mailgun (Sending > Domain settings > DNS records > Verify DNS "
     "settings); the DNS records may still be propagating",
     "421 Domain mg.example.com is not allowed to send: Domain not verified", NULL},
    {"mailgun-account-not-activated", "Mailgun", B(AUTH) | PROV_TXN, 421, NULL,
     "Please activate your Mailgun account", true, "4.7.0",
     "Upstream refused the sender domain (Mailgun: account not activated)", "account_not_activated",
     "activate the Mailgun account (the activation mail, or the control panel), then send again",
     "421 Domain sandbox0123.mailgun.org is not allowed to send: Please activate your Mailgun "
     "account. Check your inbox or log in to your control panel to resend the activation email.",
     "https://github.com/Monstarrrr/rebutify/issues/162"},
    /* ---- any server: the TLS handshake ----------------------------------- */
    {"tls-peer-alert", "any", B(TLS), 0, NULL, "peer sent TLS alert", true, "4.7.0",
     "Upstream TLS could not be established (the server aborted the handshake)", "tls_peer_alert",
     "the server's TLS set-up failed (its own log names the cause, e.g. OpenSMTPD on Debian 12 "
     "with a key it cannot use); check server_name (SNI) and the server's certificate and key",
     "TLS handshake: peer sent TLS alert internal_error during the handshake (at "
     "read_server_hello)",
     "https://github.com/OpenSMTPD/OpenSMTPD/issues/1239 (the server side of such a failure)"},
    {"tls-certificate", "any", B(TLS), 0, NULL, "certificate verify failed", true, "4.7.0",
     "Upstream TLS could not be established (certificate not trusted)", "certificate",
     "the upstream's certificate did not verify: check server_name (the name on the "
     "certificate), ca_file (for a private CA) and the server's chain and dates",
     "TLS handshake: certificate verify failed: certificate has expired",
     "the proxy's own words (BoringSSL's verification result)"},
};

size_t provider_rules(const provider_rule **out) {
  *out = rules;
  return sizeof rules / sizeof *rules;
}

const char *provider_phase_name(provider_phase p) {
  static const char *const n[] = {"greeting", "ehlo", "starttls", "tls", "auth",
                                  "mail",     "rcpt", "data",     "dot"};
  return (unsigned)p < sizeof n / sizeof *n ? n[p] : "?";
}

/* Case-insensitive substring (ASCII). */
static bool contains(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  for (; *hay; hay++)
    if (!stp_ascii_ncasecmp(hay, needle, n))
      return true;
  return false;
}

/* The enhanced code at the start of the text ("5.7.139 ...") equals want. */
static bool enhanced_is(const char *text, const char *want) {
  size_t n = strlen(want);
  return !strncmp(text, want, n) && (text[n] == ' ' || text[n] == '\n' || text[n] == '\0');
}

/* A 334 XOAUTH2 challenge decoded into out (NUL-terminated); false when it
 * is not strict base64. */
static bool decode_challenge(const char *text, char *out, size_t cap) {
  size_t n = strcspn(text, " \n");
  long k = sasl_b64_decode(text, n, (unsigned char *)out, cap - 1);
  if (k < 0)
    return false;
  out[k] = '\0';
  for (long i = 0; i < k; i++) /* JSON for the log: no control bytes */
    if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
      out[i] = ' ';
  return true;
}

static bool row_matches(const provider_rule *r, provider_phase phase, int code, const char *text) {
  if (!(r->phases & PROV_BIT(phase)) || r->code != code)
    return false;
  if (r->enhanced && !enhanced_is(text, r->enhanced))
    return false;
  return !r->pattern || contains(text, r->pattern);
}

const provider_rule *provider_match(provider_phase phase, int code, const char *text) {
  char json[PROVIDER_REPLY_MAX + 1];
  if (code == 334) {
    if (!decode_challenge(text, json, sizeof json))
      return NULL;
    text = json;
  }
  for (size_t i = 0; i < sizeof rules / sizeof *rules; i++)
    if (row_matches(&rules[i], phase, code, text))
      return &rules[i];
  return NULL;
}

/* "code text" on one line, lines joined with a space, bounded. */
static void one_line(char *out, size_t cap, int code, const char *text) {
  int n = code ? snprintf(out, cap, "%d ", code) : 0;
  size_t o = n > 0 ? (size_t)n : 0;
  for (const char *p = text; *p && o + 1 < cap; p++)
    out[o++] = *p == '\n' ? ' ' : *p;
  out[o < cap ? o : cap - 1] = '\0';
}

void provider_classify(provider_verdict *v, provider_phase phase, const smtp_reply *r) {
  memset(v, 0, sizeof *v);
  v->phase = phase;
  v->code = r->code;
  v->rule = provider_match(phase, r->code, r->text);
  one_line(v->reply, sizeof v->reply, r->code, r->text);
}

void provider_classify_text(provider_verdict *v, provider_phase phase, const char *text) {
  memset(v, 0, sizeof *v);
  v->phase = phase;
  v->rule = provider_match(phase, 0, text);
  one_line(v->reply, sizeof v->reply, 0, text);
}

void provider_classify_xoauth2(provider_verdict *v, const char *challenge, const smtp_reply *r) {
  provider_classify(v, PROV_AUTH, r);
  char json[PROVIDER_REPLY_MAX + 1];
  if (!decode_challenge(challenge, json, sizeof json))
    return;
  const provider_rule *row = provider_match(PROV_AUTH, 334, challenge);
  if (row)
    v->rule = row;
  char final[PROVIDER_REPLY_MAX + 1];
  one_line(final, sizeof final, r->code, r->text);
  /* Both halves: the decoded challenge names the cause, the final reply
   * is what the server concluded. */
  int n = snprintf(v->reply, sizeof v->reply, "334 %.180s; ", json);
  if (n > 0 && (size_t)n < sizeof v->reply)
    memcpy(v->reply + n, final, strnlen(final, sizeof v->reply - (size_t)n - 1) + 1);
  v->reply[sizeof v->reply - 1] = '\0';
}

bool provider_temporary(const provider_verdict *v) {
  if (v->rule)
    return v->rule->temporary;
  if (PROV_BIT(v->phase) & PROV_PRE_READY)
    return true;
  return v->code / 100 == 4;
}

static int device_code(const provider_rule *r, provider_phase phase) {
  if (r->temporary)
    return phase == PROV_AUTH ? 454 : 451;
  return phase == PROV_DATA || phase == PROV_DOT ? 554 : 550;
}

const char *provider_rule_device_reply(const provider_rule *r, provider_phase phase, char *buf,
                                       size_t cap) {
  snprintf(buf, cap, "%d %s %s%s\r\n", device_code(r, phase), r->device_enh, r->device_text,
           r->temporary ? ", try again later" : "");
  return buf;
}

const char *provider_device_reply(const provider_verdict *v, char *buf, size_t cap) {
  if (!v->rule)
    return NULL;
  return provider_rule_device_reply(v->rule, v->phase, buf, cap);
}

provider_phase provider_rule_typical_phase(const provider_rule *r) {
  unsigned mask = r->phases & PROV_TXN ? r->phases & PROV_TXN : r->phases;
  for (unsigned p = 0; p < PROV_NPHASES; p++)
    if (mask & PROV_BIT(p))
      return (provider_phase)p;
  return PROV_GREETING;
}

const char *provider_readme_row(const provider_rule *r, char *buf, size_t cap) {
  char dev[256];
  provider_rule_device_reply(r, provider_rule_typical_phase(r), dev, sizeof dev);
  dev[strcspn(dev, "\r\n")] = '\0';
  char what[160];
  if (r->code == 0)
    snprintf(what, sizeof what, "TLS: %s", r->pattern);
  else if (r->code == 334)
    snprintf(what, sizeof what, "334 XOAUTH2 challenge %s", r->pattern);
  else
    snprintf(what, sizeof what, "%d%s%s%s%s", r->code, r->enhanced ? " " : "",
             r->enhanced ? r->enhanced : "", r->pattern ? " … " : "", r->pattern ? r->pattern : "");
  snprintf(buf, cap, "| %s | `%s` | `%s` | `%s` | %s |", r->provider, what, dev, r->reason,
           r->hint);
  return buf;
}
