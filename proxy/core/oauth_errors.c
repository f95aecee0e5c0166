/* oauth_errors.c - what a provider's refusal during `oauth2 login` means
 * and what the admin should do, one row per error, each with the public
 * page that documents it (see oauth_login.h). Pure data and a lookup.
 *
 * Microsoft Entra puts its AADSTS number at the start of
 * error_description; Google and RFC 8628 use `error` alone. Rows that
 * match a description come first, so that an AADSTS number wins over the
 * generic OAuth2 error it travels with.
 */
#include <string.h>

#include "smtp-tls-proxy/oauth_login.h"

#define MS_DEVICE "https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code"
#define MS_CODES "https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes"
#define MS_CA                                                                                      \
  "https://learn.microsoft.com/en-us/entra/identity/conditional-access/"                           \
  "policy-block-authentication-flows"
#define MS_REPLY                                                                                   \
  "https://learn.microsoft.com/en-us/entra/identity-platform/"                                     \
  "reply-url#prefer-127001-over-localhost"
#define G_NATIVE                                                                                   \
  "https://developers.google.com/identity/protocols/oauth2/native-app#authorization-errors"
#define G_DEVICE                                                                                   \
  "https://developers.google.com/identity/protocols/oauth2/limited-input-device#allowedscopes"
#define RFC8628 "https://www.rfc-editor.org/rfc/rfc8628#section-3.5"
#define RFC6749 "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"

#define MS "Microsoft Entra"

/* clang-format off */
static const oauth_login_rule rules[] = {
  /* Entra, by AADSTS number (error_description) */
  {MS, NULL, "AADSTS50199", true,
   "Entra wants a confirmation that the device code flow cannot show (CmsiInterrupt): run "
   "the login again with --flow code", MS_CODES},
  {MS, NULL, "AADSTS53003", true,
   "a Conditional Access policy blocked this sign-in; tenants often block the device code "
   "flow: run the login again with --flow code (or ask the Entra admin to exclude this "
   "account from the authentication flows policy)", MS_CA},
  {MS, NULL, "AADSTS53000", true,
   "Conditional Access requires a compliant device, which the device code flow cannot prove: "
   "run the login again with --flow code from a managed browser", MS_CODES},
  {MS, NULL, "AADSTS53001", true,
   "Conditional Access requires a domain-joined device: run the login again with --flow code "
   "from a browser on such a device", MS_CODES},
  {MS, NULL, "AADSTS7000218", false,
   "the app registration expects a client secret: in Entra > App registrations > "
   "Authentication, set \"Allow public client flows\" to Yes (or give client_secret_file)",
   MS_DEVICE},
  {MS, NULL, "AADSTS700025", false,
   "the app registration is a public client, which must not send a secret: remove "
   "client_secret_file / client_secret_env from this upstream", MS_CODES},
  {MS, NULL, "AADSTS50011", false,
   "the redirect URI is not registered: in Entra > App registrations > Authentication, add "
   "the platform \"Mobile and desktop applications\" with redirect URI http://127.0.0.1 "
   "(Entra ignores the port of a loopback address)", MS_REPLY},
  {MS, NULL, "AADSTS9002327", false,
   "the redirect URI is registered as a single-page application: register http://127.0.0.1 "
   "under \"Mobile and desktop applications\" instead", MS_CODES},
  {MS, NULL, "AADSTS65001", false,
   "nobody has consented to the app's permissions yet: an administrator grants consent in "
   "Entra > Enterprise applications > (the app) > Permissions", MS_CODES},
  {MS, NULL, "AADSTS700016", false,
   "no application with this client_id exists in the tenant: check client_id and tenant",
   MS_CODES},
  {MS, NULL, "AADSTS90002", false, "the tenant does not exist: check tenant", MS_CODES},
  {MS, NULL, "AADSTS501481", false,
   "the PKCE code_verifier did not match: run the login again (the code belongs to an "
   "earlier attempt)", MS_CODES},
  {MS, NULL, "AADSTS54005", false,
   "the authorization code was used already: run the login again", MS_CODES},
  {MS, NULL, "AADSTS70008", false,
   "the authorization code expired: run the login again and paste the URL within a few "
   "minutes", MS_CODES},
  {MS, "authorization_declined", NULL, false,
   "the sign-in was declined in the browser: run the login again and accept", MS_DEVICE},
  {MS, "bad_verification_code", NULL, false,
   "Entra does not know this device code: run the login again", MS_DEVICE},
  /* Google */
  {"Google", "invalid_client", "Invalid client type", true,
   "Google's device flow needs an OAuth client of type \"TVs and Limited Input devices\" "
   "and does not allow https://mail.google.com/: use --flow code with a \"Desktop app\" "
   "client", G_DEVICE},
  {"Google", "invalid_scope", NULL, true,
   "Google refused the scope; its device flow does not allow the Gmail scopes: use --flow "
   "code", G_DEVICE},
  {"Google", "redirect_uri_mismatch", NULL, false,
   "Google accepts a loopback redirect on any port only for OAuth clients of type "
   "\"Desktop app\": create one in Google Cloud console > APIs & Services > Credentials",
   G_NATIVE},
  {"Google", "org_internal", NULL, false,
   "the OAuth consent screen is \"Internal\" to another Google Workspace organisation: sign "
   "in with an account of that organisation, or make the app External", G_NATIVE},
  {"Google", "admin_policy_enforced", NULL, false,
   "the Google Workspace administrator does not allow this app: trust it in Admin console > "
   "Security > Access and data control > API controls", G_NATIVE},
  {"Google", "disallowed_useragent", NULL, false,
   "Google refuses embedded browsers: open the URL in an ordinary browser", G_NATIVE},
  {"Google", "invalid_grant", NULL, false,
   "the code was expired, used already or issued for another verifier: run the login again",
   G_NATIVE},
  /* RFC 8628 and RFC 6749, any provider */
  {"RFC 8628", "expired_token", NULL, false,
   "nobody entered the code in time: run the login again and enter the code before it "
   "expires", RFC8628},
  {"RFC 8628", "access_denied", NULL, false,
   "the request was denied in the browser: run the login again and accept", RFC8628},
  {"RFC 6749", "invalid_client", NULL, false,
   "the endpoint does not accept this client: check client_id and the client secret "
   "(Google's desktop clients have one: client_secret_file)", RFC6749},
  {"RFC 6749", "unauthorized_client", NULL, false,
   "this client may not use this grant: check the app registration's platform (desktop / "
   "public client)", RFC6749},
};
/* clang-format on */

size_t oauth_login_rules(const oauth_login_rule **out) {
  *out = rules;
  return sizeof rules / sizeof *rules;
}

const oauth_login_rule *oauth_login_explain(const char *error, const char *description) {
  for (size_t i = 0; i < sizeof rules / sizeof *rules; i++) {
    const oauth_login_rule *r = &rules[i];
    if (r->error && (!error || strcmp(r->error, error) != 0))
      continue;
    if (r->needle && (!description || !strstr(description, r->needle)))
      continue;
    return r;
  }
  return NULL;
}

const oauth_login_rule *oauth_login_explain_line(const char *line) {
  const char *p = line ? strstr(line, "HTTP ") : NULL;
  const char *colon = p ? strchr(p, ':') : NULL;
  if (!colon || colon[1] != ' ')
    return NULL;
  const char *e = colon + 2, *end = strchr(e, ':');
  char err[80];
  size_t n = end ? (size_t)(end - e) : strlen(e);
  if (n >= sizeof err)
    return NULL;
  memcpy(err, e, n);
  err[n] = '\0';
  return oauth_login_explain(err, end ? end + 1 : NULL);
}
