/* test_lan_tls.c - TLS on the LAN side with real clients: openssl s_client
 * with STARTTLS at TLS 1.0 to 1.3 on a listener that allows old devices,
 * swaks --tls and --tlsc, Python's ssl, and the STARTTLS command-injection
 * check (plaintext pipelined after STARTTLS is never executed). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

static void start_tls_proxy(h_proxy *px, h_upstream *u, const char *listener_extra) {
  h_upstream_start(u, "starttls", NULL);
  h_proxy_start(px, &(h_proxy_opts){.up_port = u->port, .listener_extra = listener_extra});
}

/* OPENSSL_CONF=/dev/null drops Debian's SECLEVEL=2 so that this client can
 * still speak TLS 1.0/1.1, as an old device would. */
static int s_client(int port, const char *version, const char *extra, char *out, size_t cap) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "printf 'EHLO dev.lan\\r\\nQUIT\\r\\n' | OPENSSL_CONF=/dev/null timeout 10 "
           "openssl s_client -brief -ign_eof -%s -cipher 'DEFAULT:@SECLEVEL=0' %s "
           "-connect 127.0.0.1:%d 2>&1",
           version, extra, port);
  return h_run(cmd, NULL, 15000, out, cap);
}

static void starttls_version(const char *version, const char *proto) {
  h_upstream u;
  h_proxy px;
  start_tls_proxy(&px, &u, "    tls: starttls\n    tls_min_version: \"1.0\"\n");
  char out[16384];
  s_client(px.port, version, "-starttls smtp", out, sizeof out);
  char want[64];
  snprintf(want, sizeof want, "Protocol version: %s\n", proto);
  cr_assert_not_null(strstr(out, want), "%s not negotiated:\n%s", proto, out);
  cr_assert_not_null(strstr(out, "250 ENHANCEDSTATUSCODES"), "no EHLO inside TLS:\n%s", out);
  cr_assert_not_null(strstr(out, "221 2.0.0 Bye"), "%s", out);
  cr_assert_null(strstr(out, "250-STARTTLS"), "STARTTLS offered again inside TLS:\n%s", out);
}

ITest(integ, lan_starttls_tls10) {
  starttls_version("tls1", "TLSv1");
}
ITest(integ, lan_starttls_tls11) {
  starttls_version("tls1_1", "TLSv1.1");
}
ITest(integ, lan_starttls_tls12) {
  starttls_version("tls1_2", "TLSv1.2");
}
ITest(integ, lan_starttls_tls13) {
  starttls_version("tls1_3", "TLSv1.3");
}

ITest(integ, lan_default_listener_refuses_tls10) {
  h_upstream u;
  h_proxy px;
  start_tls_proxy(&px, &u, "    tls: starttls\n");
  char out[16384];
  s_client(px.port, "tls1", "-starttls smtp", out, sizeof out);
  cr_assert_null(strstr(out, "Protocol version: TLSv1\n"), "TLS 1.0 accepted:\n%s", out);
  cr_assert_null(strstr(out, "250 ENHANCEDSTATUSCODES"), "%s", out);
}

static void swaks_tls(const char *mode, const char *listener_extra) {
  h_upstream u;
  h_proxy px;
  start_tls_proxy(&px, &u, listener_extra);
  char cmd[1024], out[16384];
  snprintf(cmd, sizeof cmd,
           "swaks --server 127.0.0.1:%d %s --from dev@printer.test --to to@example.com "
           "--body 'over LAN TLS' 2>&1",
           px.port, mode);
  int rc = h_run(cmd, NULL, 20000, out, sizeof out);
  cr_assert_eq(rc, 0, "swaks %s exit %d:\n%s", mode, rc, out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
}

ITest(integ, lan_swaks_starttls) {
  swaks_tls("--tls", "    tls: starttls\n");
}

ITest(integ, lan_swaks_implicit_with_configured_certificate) {
  char extra[2048];
  snprintf(extra, sizeof extra,
           "    tls: implicit\n    certificate: %s/server.crt\n    private_key: %s/server.key\n",
           h_certs(), h_certs());
  swaks_tls("--tlsc", extra);
}

ITest(integ, lan_implicit_certificate_verifies_with_the_ca) {
  h_upstream u;
  h_proxy px;
  char extra[2048], caopt[1024], out[16384];
  snprintf(extra, sizeof extra,
           "    tls: implicit\n    certificate: %s/server.crt\n    private_key: %s/server.key\n",
           h_certs(), h_certs());
  start_tls_proxy(&px, &u, extra);
  snprintf(caopt, sizeof caopt, "-CAfile %s/ca.crt -verify_return_error -verify_hostname localhost",
           h_certs());
  s_client(px.port, "tls1_2", caopt, out, sizeof out);
  cr_assert_not_null(strstr(out, "Verification: OK"), "%s", out);
  cr_assert_not_null(strstr(out, "220 "), "no greeting inside TLS:\n%s", out);
}

ITest(integ, lan_python_ssl_starttls) {
  h_upstream u;
  h_proxy px;
  start_tls_proxy(&px, &u, "    tls: starttls\n");
  char cmd[2048], out[8192];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 - <<'EOF'\n"
           "import smtplib, ssl\n"
           "ctx = ssl.create_default_context(); ctx.check_hostname = False\n"
           "ctx.verify_mode = ssl.CERT_NONE\n"
           "s = smtplib.SMTP('127.0.0.1', %d, timeout=10)\n"
           "s.ehlo(); s.starttls(context=ctx); s.ehlo()\n"
           "print('TLS', s.sock.version())\n"
           "s.sendmail('py@printer.test', ['to@example.com'], 'Subject: py\\r\\n\\r\\nhi\\r\\n')\n"
           "s.quit()\n"
           "EOF\n",
           px.port);
  int rc = h_run(cmd, NULL, 20000, out, sizeof out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_not_null(strstr(out, "TLS TLSv1."), "%s", out);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
}

/* The classic injection (CVE-2011-0411 class): "STARTTLS\r\nRSET\r\n" in one
 * write. The RSET arrived in plaintext and must never be answered. */
ITest(integ, lan_starttls_plaintext_injection_is_not_executed) {
  h_upstream u;
  h_proxy px;
  start_tls_proxy(&px, &u, "    tls: starttls\n");
  char cmd[4096], out[8192];
  snprintf(cmd, sizeof cmd,
           "/usr/bin/python3 - <<'EOF'\n"
           "import socket, ssl\n"
           "s = socket.create_connection(('127.0.0.1', %d), timeout=5)\n"
           "f = s.makefile('rb')\n"
           "def reply():\n"
           "    lines = []\n"
           "    while True:\n"
           "        l = f.readline(); lines.append(l)\n"
           "        if l[3:4] != b'-': return b''.join(lines)\n"
           "reply(); s.sendall(b'EHLO dev\\r\\n'); reply()\n"
           "s.sendall(b'STARTTLS\\r\\nRSET\\r\\n')\n"
           "r = f.readline(); print('STARTTLS ->', r)\n"
           "assert r.startswith(b'220'), r\n"
           "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False\n"
           "ctx.verify_mode = ssl.CERT_NONE\n"
           "t = ctx.wrap_socket(s)\n"
           "t.settimeout(1.5)\n"
           "try:\n"
           "    data = t.recv(4096)\n"
           "    print('INJECTED REPLY', data); raise SystemExit(1)\n"
           "except socket.timeout:\n"
           "    print('nothing answered the injected RSET')\n"
           "t.settimeout(5)\n"
           "t.sendall(b'MAIL FROM:<a@b.test>\\r\\n'); r = t.recv(4096)\n"
           "print('MAIL before EHLO ->', r); assert r.startswith(b'503'), r\n"
           "t.sendall(b'EHLO dev\\r\\n'); r = t.recv(4096); assert r.startswith(b'250'), r\n"
           "print('OK')\n"
           "EOF\n",
           px.port);
  int rc = h_run(cmd, NULL, 20000, out, sizeof out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_not_null(strstr(out, "nothing answered the injected RSET"), "%s", out);
  cr_assert_not_null(strstr(out, "OK"), "%s", out);
}

ITest(integ, lan_self_signed_certificate_is_logged_with_fingerprint) {
  h_upstream u;
  h_proxy px;
  start_tls_proxy(&px, &u, "    tls: starttls\n    tls_min_version: \"1.0\"\n");
  cr_assert(h_file_contains(px.log, "self-signed-certificate", 23));
  cr_assert(h_file_contains(px.log, "key=rsa2048 sha256=", 19), "old-device listeners get RSA");
}

/* ---- cipher suites offered to devices ----------------------------------
 * Each suite is offered alone by openssl s_client (OPENSSL_CONF=/dev/null
 * and @SECLEVEL=0 so that the client still offers legacy suites), and the
 * negotiated one is read from -brief's "Ciphersuite:" line. Suites Debian's
 * OpenSSL 3 can no longer offer at all (3DES, RC4, export: built without
 * weak-ssl-ciphers) go through tests/tools/tls_hello.py, which writes the
 * raw suite numbers into a ClientHello. */

#define LEGACY_LISTENER "    tls: starttls\n    tls_min_version: \"1.0\"\n"

/* A 1.2 listener with an RSA certificate, so that the RSA suites could be
 * picked if the list allowed them (the self-signed default is P-256). */
static void start_rsa_tls12_proxy(h_proxy *px, h_upstream *u) {
  char cmd[2048], out[4096], crt[512], key[512], extra[2048];
  h_path(crt, sizeof crt, "rsa.crt");
  h_path(key, sizeof key, "rsa.key");
  snprintf(cmd, sizeof cmd,
           "openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' -days 2 "
           "-subj /CN=localhost 2>&1",
           key, crt);
  cr_assert_eq(h_run(cmd, NULL, 30000, out, sizeof out), 0, "%s", out);
  snprintf(extra, sizeof extra, "    tls: starttls\n    certificate: %s\n    private_key: %s\n",
           crt, key);
  start_tls_proxy(px, u, extra);
}

/* s_client at `version` offering exactly `ciphers`; the suite negotiated
 * into suite ("" when the handshake failed). */
static void try_ciphers(int port, const char *version, const char *ciphers, char *suite,
                        size_t cap) {
  char cmd[2048], out[16384];
  snprintf(cmd, sizeof cmd,
           "printf 'EHLO dev.lan\\r\\nQUIT\\r\\n' | OPENSSL_CONF=/dev/null timeout 10 "
           "openssl s_client -brief -ign_eof -starttls smtp -%s -cipher '%s@SECLEVEL=0' "
           "-connect 127.0.0.1:%d 2>&1",
           version, ciphers, port);
  h_run(cmd, NULL, 15000, out, sizeof out);
  cr_assert_null(strstr(out, "no cipher match"), "the client cannot offer %s:\n%s", ciphers, out);
  suite[0] = '\0';
  const char *p = strstr(out, "Ciphersuite: ");
  if (p) {
    p += strlen("Ciphersuite: ");
    size_t n = strcspn(p, "\r\n");
    snprintf(suite, cap, "%.*s", (int)n, p);
    cr_assert_not_null(strstr(out, "250 ENHANCEDSTATUSCODES"), "no EHLO inside TLS:\n%s", out);
  }
}

typedef struct cipher_case {
  const char *version;  /* s_client option without the dash */
  const char *offer;    /* cipher string */
  const char *expected; /* negotiated suite, or NULL: refused */
} cipher_case;

static void check_cipher_table(int port, const cipher_case *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char got[128];
    try_ciphers(port, t[i].version, t[i].offer, got, sizeof got);
    if (t[i].expected)
      cr_expect_str_eq(got, t[i].expected, "-%s offering %s: got '%s'", t[i].version, t[i].offer,
                       got);
    else
      cr_expect_str_eq(got, "", "-%s offering %s was accepted: %s", t[i].version, t[i].offer, got);
  }
}

/* tls_hello.py: the answer line for a raw ClientHello. */
static void raw_hello(int port, const char *version, const char *suites, char *ans, size_t cap) {
  char cmd[1024], out[4096];
  snprintf(cmd, sizeof cmd,
           H_PYTHON " '%s/tls_hello.py' --port %d --starttls --version %s --suites %s 2>&1",
           STP_TOOLS_DIR, port, version, suites);
  int rc = h_run(cmd, NULL, 15000, out, sizeof out);
  cr_assert_eq(rc, 0, "tls_hello.py failed:\n%s", out);
  snprintf(ans, cap, "%.*s", (int)strcspn(out, "\r\n"), out);
}

/* 3DES (SWEET32), single DES, RC4 and export suites: raw suite numbers. */
static const char *const weak_raw_suites[] = {
    "0x000a", /* TLS_RSA_WITH_3DES_EDE_CBC_SHA (DES-CBC3-SHA) */
    "0xc012", /* TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA */
    "0x0009", /* TLS_RSA_WITH_DES_CBC_SHA */
    "0x0005", /* TLS_RSA_WITH_RC4_128_SHA */
    "0x0004", /* TLS_RSA_WITH_RC4_128_MD5 */
    "0xc011", /* TLS_ECDHE_RSA_WITH_RC4_128_SHA */
    "0x0003", /* TLS_RSA_EXPORT_WITH_RC4_40_MD5 */
    "0x0008", /* TLS_RSA_EXPORT_WITH_DES40_CBC_SHA */
    "0x0001", /* TLS_RSA_WITH_NULL_MD5 */
    "0x0002", /* TLS_RSA_WITH_NULL_SHA */
    "0x0018", /* TLS_DH_anon_WITH_RC4_128_MD5 */
};

static void check_weak_raw(int port, const char *version, const char *control,
                           const char *control_answer) {
  char ans[256];
  /* The tool itself works: an allowed suite gets a ServerHello. */
  raw_hello(port, version, control, ans, sizeof ans);
  cr_assert_str_eq(ans, control_answer, "control %s at %s: %s", control, version, ans);
  for (size_t i = 0; i < sizeof weak_raw_suites / sizeof *weak_raw_suites; i++) {
    raw_hello(port, version, weak_raw_suites[i], ans, sizeof ans);
    cr_expect(strncmp(ans, "ALERT 2 ", 8) == 0 || strcmp(ans, "CLOSED") == 0,
              "TLS %s: suite %s was not refused: %s", version, weak_raw_suites[i], ans);
  }
  /* Offered next to an allowed suite, the weak one is still never picked. */
  char both[64];
  snprintf(both, sizeof both, "0x000a,%s", control);
  raw_hello(port, version, both, ans, sizeof ans);
  cr_expect_str_eq(ans, control_answer, "TLS %s with 3DES offered first: %s", version, ans);
}

ITest(integ, lan_legacy_listener_ciphers) {
  h_upstream u;
  h_proxy px;
  start_tls_proxy(&px, &u, LEGACY_LISTENER);
  static const cipher_case t[] = {
      {"tls1", "AES128-SHA", "AES128-SHA"},
      {"tls1", "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES128-SHA"},
      {"tls1", "AES256-SHA", "AES256-SHA"},
      {"tls1_2", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
      {"tls1", "NULL-SHA", NULL},
      {"tls1", "NULL-MD5", NULL},
      {"tls1", "ADH-AES128-SHA", NULL},
      {"tls1", "AECDH-AES128-SHA", NULL},
      {"tls1_2", "NULL-SHA256", NULL},
      {"tls1_2", "ADH-AES128-GCM-SHA256", NULL},
  };
  check_cipher_table(px.port, t, sizeof t / sizeof *t);
}

ITest(integ, lan_legacy_listener_refuses_3des_rc4_export_raw) {
  h_upstream u;
  h_proxy px;
  start_tls_proxy(&px, &u, LEGACY_LISTENER);
  check_weak_raw(px.port, "1.0", "0x002f", "CHOSEN 0x002f"); /* AES128-SHA */
  check_weak_raw(px.port, "1.2", "0x002f", "CHOSEN 0x002f");
}

ITest(integ, lan_tls12_listener_ciphers) {
  h_upstream u;
  h_proxy px;
  start_rsa_tls12_proxy(&px, &u);
  static const cipher_case t[] = {
      {"tls1_2", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
      {"tls1_2", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
      {"tls1_2", "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
      /* no forward secrecy or CBC on a listener that has no old devices */
      {"tls1_2", "AES128-GCM-SHA256", NULL},
      {"tls1_2", "AES128-SHA", NULL},
      {"tls1_2", "ECDHE-RSA-AES128-SHA", NULL},
      {"tls1_2", "NULL-SHA256", NULL},
      {"tls1_2", "ADH-AES128-GCM-SHA256", NULL},
  };
  check_cipher_table(px.port, t, sizeof t / sizeof *t);
}

ITest(integ, lan_tls12_listener_refuses_3des_rc4_export_raw) {
  h_upstream u;
  h_proxy px;
  start_rsa_tls12_proxy(&px, &u);
  check_weak_raw(px.port, "1.2", "0xc02f", "CHOSEN 0xc02f"); /* ECDHE-RSA-AES128-GCM-SHA256 */
}

/* The client lists a weaker suite first; the server's order wins. */
ITest(integ, lan_listeners_prefer_the_servers_cipher_order) {
  h_upstream u, u2;
  h_proxy px, px2;
  char got[128];
  start_tls_proxy(&px, &u, LEGACY_LISTENER);
  try_ciphers(px.port, "tls1", "AES128-SHA:ECDHE-RSA-AES128-SHA", got, sizeof got);
  cr_expect_str_eq(got, "ECDHE-RSA-AES128-SHA", "TLS 1.0: %s", got);
  try_ciphers(px.port, "tls1_2", "AES128-SHA:ECDHE-RSA-AES256-GCM-SHA384", got, sizeof got);
  cr_expect_str_eq(got, "ECDHE-RSA-AES256-GCM-SHA384", "TLS 1.2 on the legacy listener: %s", got);
  start_rsa_tls12_proxy(&px2, &u2);
  try_ciphers(px2.port, "tls1_2", "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-RSA-AES128-GCM-SHA256", got,
              sizeof got);
  cr_expect_str_eq(got, "ECDHE-RSA-AES128-GCM-SHA256", "TLS 1.2 listener: %s", got);
}
