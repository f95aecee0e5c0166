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

Test(integ, lan_starttls_tls10) {
  starttls_version("tls1", "TLSv1");
}
Test(integ, lan_starttls_tls11) {
  starttls_version("tls1_1", "TLSv1.1");
}
Test(integ, lan_starttls_tls12) {
  starttls_version("tls1_2", "TLSv1.2");
}
Test(integ, lan_starttls_tls13) {
  starttls_version("tls1_3", "TLSv1.3");
}

Test(integ, lan_default_listener_refuses_tls10) {
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

Test(integ, lan_swaks_starttls) {
  swaks_tls("--tls", "    tls: starttls\n");
}

Test(integ, lan_swaks_implicit_with_configured_certificate) {
  char extra[2048];
  snprintf(extra, sizeof extra,
           "    tls: implicit\n    certificate: %s/server.crt\n    private_key: %s/server.key\n",
           h_certs(), h_certs());
  swaks_tls("--tlsc", extra);
}

Test(integ, lan_implicit_certificate_verifies_with_the_ca) {
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

Test(integ, lan_python_ssl_starttls) {
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
Test(integ, lan_starttls_plaintext_injection_is_not_executed) {
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

Test(integ, lan_self_signed_certificate_is_logged_with_fingerprint) {
  h_upstream u;
  h_proxy px;
  start_tls_proxy(&px, &u, "    tls: starttls\n    tls_min_version: \"1.0\"\n");
  cr_assert(h_file_contains(px.log, "self-signed-certificate", 23));
  cr_assert(h_file_contains(px.log, "key=rsa2048 sha256=", 19), "old-device listeners get RSA");
}
