/* config_jwt.c - the oauth2 keys of the two credentials that are signed
 * JWTs instead of a client secret or a refresh token.
 *
 * Owns: grant: service_account (Google Workspace domain-wide delegation:
 * service_account_file, subject, the key's token_uri as token endpoint,
 * scope) and Microsoft certificate credentials (client_certificate_file +
 * client_key_file, for client_credentials and refresh_token), with their
 * conflicts. Guarantees: each file is read once, bounded, through
 * cfg_read_file_value (config_file.c: a key file readable by group or others is warned
 * about, the read buffer is cleansed); the private key is kept only in
 * stp_oauth2_cfg.private_key, cleansed when the configuration is freed;
 * a diagnostic names the file and the problem, never key material. The
 * key itself is parsed by BoringSSL when the configuration goes live
 * (proxy/net/tok_jwt.c): here only the PEM armour is checked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_auth.h"
#include "config_file.h"
#include "smtp-tls-proxy/jwt.h"
#include "smtp-tls-proxy/url.h"

static bool has_armour(const char *pem, const char *what) {
  char begin[64];
  snprintf(begin, sizeof begin, "-----BEGIN %s-----", what);
  return strstr(pem, begin) != NULL;
}

static bool pem_is_private_key(const char *pem) {
  return has_armour(pem, "PRIVATE KEY") || has_armour(pem, "RSA PRIVATE KEY");
}

/* The key file's path, resolved, for the token cache's key and logs. */
static void set_path(cfg_ctx *c, const yaml_node_t *vn, const char *key, char **dst) {
  const char *s = cfg_str_of(c, vn, key);
  if (s && !*dst)
    *dst = cfg_resolve_path(c, s);
}

static void take_sa_key(cfg_ctx *c, const cfg_jwt_nodes *j, stp_upstream_cfg *u,
                        stp_oauth2_cfg *o) {
  char *text = cfg_read_file_value(c, j->v_sa, "service_account_file", true);
  set_path(c, j->v_sa, "service_account_file", &o->key_file);
  if (!text || c->no_secrets) {
    stp_free_secret(text);
    return;
  }
  jwt_sa_key k;
  char why[200];
  if (jwt_sa_parse(text, strlen(text), &k, why, sizeof why) < 0) {
    cfg_err(c, j->v_sa, "cannot use service_account_file '%s': %s", o->key_file, why);
  } else if (!pem_is_private_key(k.private_key)) {
    cfg_err(c, j->v_sa, "cannot use service_account_file '%s': its private_key is not a PEM key",
            o->key_file);
  } else {
    o->sa_email = k.client_email;
    o->sa_key_id = k.private_key_id;
    o->private_key = k.private_key;
    k.client_email = k.private_key_id = k.private_key = NULL;
    if (!j->k_url) { /* Google's key names its own token endpoint */
      free(o->token_url);
      o->token_url = k.token_uri;
      k.token_uri = NULL;
      stp_url url;
      if (stp_url_parse(o->token_url, &url) != STP_OK)
        cfg_err(c, j->v_sa, "service_account_file '%s': bad token_uri '%s'", o->key_file,
                o->token_url);
      else if (!url.https && !u->insecure)
        cfg_err(c, j->v_sa,
                "service_account_file '%s': token_uri over http:// needs insecure: true",
                o->key_file);
    }
  }
  jwt_sa_free(&k);
  stp_free_secret(text);
}

/* subject: written, else auth.username (kind: gmail: mailbox). */
static void take_subject(cfg_ctx *c, yaml_node_t *n, const cfg_jwt_nodes *j,
                         const stp_upstream_cfg *u, stp_oauth2_cfg *o) {
  const char *dflt = u->kind == STP_UP_GMAIL ? u->mailbox : u->username;
  if (j->v_sub)
    cfg_set_str(c, j->v_sub, "subject", &o->subject);
  else if (j->k_sub)
    cfg_err(c, j->k_sub, "'subject' is empty");
  else if (dflt && strcmp(dflt, "me") && strchr(dflt, '@'))
    o->subject = stp_xstrdup(dflt);
  else
    cfg_err(c, n,
            "grant: service_account needs subject (the mailbox to act as; the default, %s, "
            "is %s)",
            u->kind == STP_UP_GMAIL ? "mailbox" : "auth.username",
            dflt ? "not an address" : "not given");
}

static void parse_service_account(cfg_ctx *c, yaml_node_t *n, const cfg_jwt_nodes *j,
                                  stp_upstream_cfg *u, stp_oauth2_cfg *o) {
  if (j->m365)
    cfg_err(c, j->v_grant,
            "grant: service_account is Google's: use preset: google or "
            "google-gmail-api, or no preset");
  if (j->k_secret)
    cfg_err(c, j->k_secret,
            "client secrets are not used with grant: service_account (the "
            "service_account_file holds the key)");
  if (j->k_cert || j->k_key)
    cfg_err(c, j->k_cert ? j->k_cert : j->k_key,
            "client_certificate_file and client_key_file are not used with grant: "
            "service_account");
  if (j->k_rt)
    cfg_err(c, j->k_rt, "refresh_token_file is not used with grant: service_account");
  if (j->v_sa)
    take_sa_key(c, j, u, o);
  else
    cfg_err(c, j->k_sa ? j->k_sa : n,
            "grant: service_account needs service_account_file (Google's JSON key)");
  take_subject(c, n, j, u, o);
  if (!o->scope)
    cfg_err(c, n, "grant: service_account needs scope (https://mail.google.com/ for SMTP)");
}

static void parse_certificate(cfg_ctx *c, yaml_node_t *n, const cfg_jwt_nodes *j,
                              stp_oauth2_cfg *o) {
  (void)n;
  if (j->k_secret) {
    cfg_err(c, j->k_cert,
            "'client_certificate_file' conflicts with '%s': give a client secret "
            "or a certificate, not both",
            (const char *)j->k_secret->data.scalar.value);
    return;
  }
  if (!j->k_key || !j->k_cert) {
    cfg_err(c, j->k_cert ? j->k_cert : j->k_key, "%s needs %s",
            j->k_cert ? "client_certificate_file" : "client_key_file",
            j->k_cert ? "client_key_file" : "client_certificate_file");
    return;
  }
  if (!j->v_cert || !j->v_key) {
    cfg_err(c, j->v_cert ? j->k_key : j->k_cert, "'%s' is empty",
            j->v_cert ? "client_key_file" : "client_certificate_file");
    return;
  }
  o->certificate = cfg_read_file_value(c, j->v_cert, "client_certificate_file", false);
  o->private_key = cfg_read_file_value(c, j->v_key, "client_key_file", true);
  set_path(c, j->v_key, "client_key_file", &o->key_file);
  if (c->no_secrets)
    return;
  if (o->certificate && !has_armour(o->certificate, "CERTIFICATE"))
    cfg_err(c, j->v_cert, "client_certificate_file does not hold a PEM certificate");
  if (o->private_key && !pem_is_private_key(o->private_key))
    cfg_err(c, j->v_key,
            "client_key_file '%s' does not hold a PEM private key "
            "(an encrypted key cannot be used)",
            o->key_file);
}

void cfg_parse_oauth2_jwt(cfg_ctx *c, yaml_node_t *n, const cfg_jwt_nodes *j, stp_upstream_cfg *u,
                          stp_oauth2_cfg *o) {
  if (o->grant == STP_GRANT_SERVICE_ACCOUNT) {
    parse_service_account(c, n, j, u, o);
    return;
  }
  if (j->k_sa)
    cfg_err(c, j->k_sa, "service_account_file is only used with grant: service_account");
  if (j->k_sub)
    cfg_err(c, j->k_sub, "subject is only used with grant: service_account");
  if (j->k_cert || j->k_key)
    parse_certificate(c, n, j, o);
}
