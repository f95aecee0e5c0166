/* config_alerts.c - the `alerts:` section with the defaults of SPEC.md.
 *
 * Guarantees: the webhook is an https:// URL (an alert carries upstream
 * names and provider words: never in clear text); the email is a plain
 * address that some route takes, as a message with the null sender would
 * be routed; at least one of the two is given; durations are positive.
 * No files are opened here beyond the ca_file check every ca_file gets.
 */
#include "config_alerts.h"

#include <stdlib.h>
#include <string.h>

#include "config_file.h"
#include "config_spool.h"
#include "smtp-tls-proxy/route.h"
#include "smtp-tls-proxy/url.h"
#include "smtp-tls-proxy/util.h"

/* clang-format off */
enum { A_WEBHOOK, A_CA, A_EMAIL, A_MININT, A_AFTER, A_N };
static const char *const alert_keys[A_N] = {
  [A_WEBHOOK] = "webhook", [A_CA] = "ca_file", [A_EMAIL] = "email",
  [A_MININT] = "min_interval", [A_AFTER] = "alert_after"};
/* clang-format on */

static void parse_webhook(cfg_ctx *c, yaml_node_t *n, stp_alerts_cfg *a) {
  const char *s = cfg_nonempty(c, n, "webhook");
  stp_url u;
  if (!s)
    return;
  if (stp_url_parse(s, &u) != STP_OK || !u.https)
    cfg_err(c, n, "bad webhook URL '%s' (expected https://host[:port]/path)", s);
  else
    a->webhook = stp_xstrdup(s);
}

static void parse_email(cfg_ctx *c, yaml_node_t *n, stp_alerts_cfg *a) {
  const char *s = cfg_nonempty(c, n, "email");
  if (!s)
    return;
  if (!cfg_plain_address(s)) {
    cfg_err(c, n, "bad address '%s' for email (expected user@domain)", s);
    return;
  }
  route_input in = {NULL, NULL, NULL, "", s, 0};
  if (c->cfg->n_routes && route_match(c->cfg, &in) < 0) {
    cfg_err(c, n,
            "no route takes alert mail to '%s' (sender <>, no listener): add a route whose "
            "match allows it",
            s);
    return;
  }
  a->email = stp_xstrdup(s);
}

void cfg_parse_alerts(cfg_ctx *c, yaml_node_t *n) {
  yaml_node_t *k[A_N], *v[A_N];
  if (!cfg_expect_map(c, n, "alerts"))
    return;
  stp_alerts_cfg *a = stp_xcalloc(1, sizeof *a);
  c->cfg->alerts = a;
  a->pos = (stp_pos){cfg_nline(n), cfg_ncol(n)};
  a->min_interval_ms = 3600 * 1000;
  a->alert_after_ms = 5 * 60 * 1000;
  WALK(c, n, "in alerts", alert_keys, k, v);
  if (v[A_WEBHOOK])
    parse_webhook(c, v[A_WEBHOOK], a);
  if (v[A_CA])
    cfg_parse_file(c, v[A_CA], "ca_file", &a->ca_file);
  if (!a->ca_file)
    a->ca_file = stp_xstrdup(CFG_DEFAULT_CA_FILE);
  if (v[A_EMAIL])
    parse_email(c, v[A_EMAIL], a);
  if (v[A_MININT])
    cfg_parse_duration(c, v[A_MININT], "min_interval", false, &a->min_interval_ms);
  if (v[A_AFTER])
    cfg_parse_duration(c, v[A_AFTER], "alert_after", true, &a->alert_after_ms);
  if (!v[A_WEBHOOK] && !v[A_EMAIL])
    cfg_err(c, n, "alerts needs 'webhook' or 'email' (or both)");
}

void cfg_free_alerts(stp_alerts_cfg *a) {
  if (!a)
    return;
  free(a->webhook);
  free(a->ca_file);
  free(a->email);
  free(a);
}
