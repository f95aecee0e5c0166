/* test_proxyproto.c - listeners with proxy_protocol: the client a
 * balancer's PROXY header names is the client for the allow list, rate
 * limits and logs; headers that are missing, garbage, truncated, too long,
 * late or from an address not listed are refused. Raw sockets from chosen
 * loopback addresses (127.0.0.1 is the balancer, 127.0.0.5 the device),
 * then HAProxy from Debian (send-proxy, send-proxy-v2) in front of two
 * replicas of the proxy.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "spool_common.h"

#define BALANCER "127.0.0.1"
#define DEVICE "127.0.0.5"
#define PP_LISTENER                                                                                \
  "    allow: [\"127.0.0.5/32\", \"127.0.0.7/32\"]\n"                                              \
  "    proxy_protocol: [\"127.0.0.1/32\"]\n"
#define V1_DEVICE "PROXY TCP4 127.0.0.5 127.0.0.1 40000 25\r\n"

static void start(h_proxy *px, h_upstream *u, const char *more) {
  static char extra[1024];
  snprintf(extra, sizeof extra, "%s%s", PP_LISTENER, more ? more : "");
  h_upstream_start(u, "starttls", NULL);
  h_proxy_start(px, &(h_proxy_opts){.up_port = u->port, .listener_extra = extra});
}

/* Connect from src and send n raw bytes first (none when n is 0). */
static void pp_open(h_smtp *c, int port, const char *src, const void *hdr, size_t n) {
  cr_assert_eq(h_smtp_connect_from(c, port, src), 0, "connect from %s", src);
  if (n)
    cr_assert_eq(h_smtp_send(c, hdr, n), 0);
}

static size_t v2_header(uint8_t *b, uint8_t cmd, const char *src_ip, uint16_t sport) {
  memcpy(b, "\r\n\r\n\0\r\nQUIT\n", 12);
  b[12] = (uint8_t)(0x20 | cmd);
  b[13] = 0x11;
  b[14] = 0;
  b[15] = 12;
  inet_pton(AF_INET, src_ip, b + 16);
  inet_pton(AF_INET, "127.0.0.1", b + 20);
  b[24] = (uint8_t)(sport >> 8);
  b[25] = (uint8_t)sport;
  b[26] = 0;
  b[27] = 25;
  return 28;
}

static int one_message(h_smtp *c, char *text, size_t cap) {
  const char *rcpts[] = {"x@example.com", NULL};
  const char *body = "Subject: pp\r\n\r\nscan\r\n";
  return h_smtp_message(c, "scan@printer.test", rcpts, body, strlen(body), text, cap, NULL);
}

static void expect_log(const h_proxy *px, const char *const all[]) {
  char line[1024];
  cr_assert(h_file_wait_line(px->log, all, 5000, line, sizeof line), "no log line with %s %s",
            all[0], all[1] ? all[1] : "");
}

/* The reply to what was sent (or to nothing), then the connection ends. */
static void expect_refused(h_smtp *c, int code, const char *needle) {
  char text[1024];
  int got = h_smtp_reply(c, 8000, text, sizeof text);
  cr_assert_eq(got, code, "expected %d, got %d %s", code, got, text);
  cr_assert_not_null(strstr(text, needle), "%s", text);
  cr_assert(h_smtp_wait_eof(c, 5000), "connection left open");
}

ITest(integ, proxy_v1_header_names_the_client) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  h_smtp c;
  char text[1024];
  pp_open(&c, px.port, BALANCER, V1_DEVICE, strlen(V1_DEVICE));
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220, "%s", text);
  cr_assert_eq(h_smtp_cmd(&c, "EHLO printer", text, sizeof text), 250, "%s", text);
  cr_assert_eq(one_message(&c, text, sizeof text), 250, "%s", text);
  cr_assert_eq(h_wait_records(u.record, "message", 1, 5000), 1);
  expect_log(&px, (const char *const[]){"connect", "client=127.0.0.5", "via=127.0.0.1", NULL});
}

/* The device's bytes behind the header, in the same segment: kept, and
 * answered only after the greeting. */
ITest(integ, proxy_v2_header_with_bytes_behind_it) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  uint8_t b[64];
  size_t n = v2_header(b, 1, DEVICE, 40001);
  memcpy(b + n, "EHLO printer\r\n", 14);
  h_smtp c;
  char text[1024];
  pp_open(&c, px.port, BALANCER, b, n + 14);
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220, "%s", text);
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 250, "EHLO lost: %s", text);
  cr_assert_eq(one_message(&c, text, sizeof text), 250, "%s", text);
  expect_log(&px, (const char *const[]){"connect", "client=127.0.0.5", "via=127.0.0.1", NULL});
}

ITest(integ, proxy_header_client_checked_by_allow) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  h_smtp c;
  const char *hdr = "PROXY TCP4 127.0.0.9 127.0.0.1 40000 25\r\n";
  pp_open(&c, px.port, BALANCER, hdr, strlen(hdr));
  expect_refused(&c, 554, "Access denied");
  expect_log(&px, (const char *const[]){"refused", "client=127.0.0.9", "allow", NULL});
  /* LOCAL (v2) and UNKNOWN (v1): the balancer itself is the client, and it
   * is not in the allow list. */
  uint8_t b[64];
  size_t n = v2_header(b, 0, DEVICE, 1);
  pp_open(&c, px.port, BALANCER, b, n);
  expect_refused(&c, 554, "Access denied");
  pp_open(&c, px.port, BALANCER, "PROXY UNKNOWN\r\n", 15);
  expect_refused(&c, 554, "Access denied");
  expect_log(&px, (const char *const[]){"refused", "client=127.0.0.1", "allow", NULL});
}

ITest(integ, proxy_header_missing_or_garbage_refused) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  h_smtp c;
  /* Plain SMTP from the balancer's address. */
  pp_open(&c, px.port, BALANCER, "EHLO printer\r\n", 14);
  expect_refused(&c, 554, "Invalid PROXY protocol header");
  static const char garbage[] = "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1";
  pp_open(&c, px.port, BALANCER, garbage, sizeof garbage - 1);
  expect_refused(&c, 554, "Invalid PROXY");
  const char *bad_port = "PROXY TCP4 127.0.0.5 127.0.0.1 040000 25\r\n";
  pp_open(&c, px.port, BALANCER, bad_port, strlen(bad_port));
  expect_refused(&c, 554, "Invalid PROXY");
  char longline[200];
  memset(longline, '1', sizeof longline);
  memcpy(longline, "PROXY UNKNOWN ", 14);
  pp_open(&c, px.port, BALANCER, longline, sizeof longline);
  expect_refused(&c, 554, "Invalid PROXY");
  uint8_t b[64];
  v2_header(b, 1, DEVICE, 1);
  b[14] = 0xff; /* a length past the bound */
  pp_open(&c, px.port, BALANCER, b, 16);
  expect_refused(&c, 554, "Invalid PROXY");
  expect_log(&px, (const char *const[]){"refused", "client=127.0.0.1", "1040 bytes", NULL});
  expect_log(&px, (const char *const[]){"refused", "107 bytes", NULL});
  cr_assert_eq(h_wait_records(u.record, "message", 0, 100), 0);
}

ITest(integ, proxy_header_timeout_and_truncated) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, "    idle_timeout: 2s\n");
  h_smtp c;
  pp_open(&c, px.port, BALANCER, NULL, 0);
  cr_assert(h_smtp_quiet(&c, 1000), "no greeting before the header");
  int64_t t0 = h_now_ms();
  expect_refused(&c, 421, "PROXY protocol header timeout");
  cr_assert_lt(h_now_ms() - t0, 3000);
  /* A truncated header waits for the rest, then times out. */
  uint8_t b[64];
  v2_header(b, 1, DEVICE, 1);
  pp_open(&c, px.port, BALANCER, b, 20);
  expect_refused(&c, 421, "timeout");
  /* Truncated, then the balancer goes away: logged, nothing delivered. */
  pp_open(&c, px.port, BALANCER, V1_DEVICE, 20);
  h_smtp_close(&c);
  expect_log(&px, (const char *const[]){"refused", "PROXY header: connection closed", NULL});
  expect_log(&px, (const char *const[]){"refused", "within the header timeout", NULL});
}

ITest(integ, proxy_header_from_unlisted_address_refused) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  h_smtp c;
  char text[1024];
  /* A device that is allowed may speak SMTP directly... */
  pp_open(&c, px.port, DEVICE, NULL, 0);
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220, "%s", text);
  cr_assert_eq(h_smtp_cmd(&c, "EHLO printer", text, sizeof text), 250, "%s", text);
  cr_assert_eq(one_message(&c, text, sizeof text), 250, "%s", text);
  h_smtp_close(&c);
  /* ...but may not claim another address. */
  const char *spoof = "PROXY TCP4 127.0.0.7 127.0.0.1 40000 25\r\n";
  pp_open(&c, px.port, DEVICE, NULL, 0);
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220, "%s", text);
  cr_assert_eq(h_smtp_send(&c, spoof, strlen(spoof)), 0);
  expect_refused(&c, 554, "not allowed");
  uint8_t b[64];
  size_t n = v2_header(b, 1, "127.0.0.7", 1);
  pp_open(&c, px.port, DEVICE, NULL, 0);
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220, "%s", text);
  cr_assert_eq(h_smtp_send(&c, b, 5), 0); /* held: could be a header */
  cr_assert(h_smtp_quiet(&c, 300));
  cr_assert_eq(h_smtp_send(&c, b + 5, n - 5), 0);
  expect_refused(&c, 554, "not allowed");
  expect_log(&px,
             (const char *const[]){"refused", "client=127.0.0.5", "not in proxy_protocol", NULL});
  cr_assert_eq(h_wait_records(u.record, "message", 1, 2000), 1);
}

/* ---- HAProxy in front ------------------------------------------------------ */

typedef struct haproxy {
  h_proc *proc;
  int port_v1, port_v2; /* frontends: send-proxy and send-proxy-v2 */
} haproxy;

/* From an address of its own, so the probe is not confused with a device. */
static bool port_open(int port) {
  h_smtp c;
  bool ok = h_smtp_connect_from(&c, port, "127.0.0.8") == 0;
  h_smtp_close(&c);
  return ok;
}

/* haproxy cannot bind port 0: pick free ports, retry if one was taken
 * meanwhile (bounded). Backends: the replicas' LAN ports. */
static void haproxy_start(haproxy *hp, const int *replicas, size_t n) {
  for (int attempt = 0; attempt < 5; attempt++) {
    hp->port_v1 = h_free_port();
    hp->port_v2 = h_free_port();
    char cfg[4096], path[512];
    int len = snprintf(cfg, sizeof cfg,
                       "global\n  maxconn 200\n"
                       "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
                       "  timeout server 30s\n"
                       "frontend v1\n  bind 127.0.0.1:%d\n  default_backend b1\n"
                       "frontend v2\n  bind 127.0.0.1:%d\n  default_backend b2\n",
                       hp->port_v1, hp->port_v2);
    for (int v = 1; v <= 2; v++) {
      len +=
          snprintf(cfg + len, sizeof cfg - (size_t)len, "backend b%d\n  balance roundrobin\n", v);
      for (size_t i = 0; i < n; i++)
        len += snprintf(cfg + len, sizeof cfg - (size_t)len, "  server r%zu 127.0.0.1:%d %s\n", i,
                        replicas[i], v == 1 ? "send-proxy" : "send-proxy-v2");
    }
    h_write_file(h_path(path, sizeof path, "haproxy.cfg"), cfg, (size_t)len);
    char *argv[] = {"haproxy", "-db", "-f", path, NULL};
    hp->proc = h_spawn("haproxy", argv, NULL);
    for (int i = 0; i < 100 && h_proc_alive(hp->proc); i++) {
      if (port_open(hp->port_v1) && port_open(hp->port_v2))
        return;
      h_sleep_ms(50);
    }
    h_proc_forget(hp->proc);
  }
  cr_assert_fail("haproxy did not start");
}

static int via_haproxy(int port, const char *src, char *text, size_t cap) {
  h_smtp c;
  pp_open(&c, port, src, NULL, 0);
  int code = h_smtp_reply(&c, H_REPLY_MS, text, cap);
  if (code == 220 && (code = h_smtp_cmd(&c, "EHLO printer", text, cap)) == 250)
    code = one_message(&c, text, cap);
  h_smtp_close(&c);
  return code;
}

ITest(integ, haproxy_v1_v2_two_replicas_allow_sees_the_device) {
  h_upstream u;
  h_proxy a, b;
  start(&a, &u, NULL);
  h_proxy_start(&b, &(h_proxy_opts){.up_port = u.port, .listener_extra = PP_LISTENER});
  haproxy hp;
  haproxy_start(&hp, (int[]){a.port, b.port}, 2);
  char text[1024];
  for (int i = 0; i < 4; i++) {
    int port = i % 2 ? hp.port_v2 : hp.port_v1;
    for (int k = 0; k < 2; k++)
      cr_assert_eq(via_haproxy(port, DEVICE, text, sizeof text), 250, "%s", text);
  }
  cr_assert_eq(h_wait_records(u.record, "message", 8, 5000), 8);
  /* Both replicas served the device, and saw it, not HAProxy. */
  const char *const seen[] = {"connect", "client=127.0.0.5", "via=127.0.0.1", NULL};
  expect_log(&a, seen);
  expect_log(&b, seen);
  /* A device outside the allow list is refused whatever frontend it uses. */
  h_smtp c;
  pp_open(&c, hp.port_v1, "127.0.0.6", NULL, 0);
  expect_refused(&c, 554, "Access denied");
  pp_open(&c, hp.port_v2, "127.0.0.6", NULL, 0);
  expect_refused(&c, 554, "Access denied");
  cr_assert(h_file_contains(a.log, "client=127.0.0.6", 16) ||
            h_file_contains(b.log, "client=127.0.0.6", 16));
  cr_assert_not(h_file_contains(a.log, "client=127.0.0.1 via", 20));
  cr_assert_not(h_file_contains(b.log, "client=127.0.0.1 via", 20));
}

ITest(integ, haproxy_rate_limit_keyed_on_the_device) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, "    rate_limit: \"2/1h\"\n");
  haproxy hp;
  haproxy_start(&hp, (int[]){px.port}, 1);
  char text[1024];
  cr_assert_eq(via_haproxy(hp.port_v2, DEVICE, text, sizeof text), 250, "%s", text);
  cr_assert_eq(via_haproxy(hp.port_v1, DEVICE, text, sizeof text), 250, "%s", text);
  int code = via_haproxy(hp.port_v2, DEVICE, text, sizeof text);
  cr_assert_eq(code, 451, "third message of 127.0.0.5: %d %s", code, text);
  /* Another device behind the same balancer has its own budget. */
  cr_assert_eq(via_haproxy(hp.port_v2, "127.0.0.7", text, sizeof text), 250, "%s", text);
  cr_assert_eq(h_wait_records(u.record, "message", 3, 5000), 3);
}

/* Implicit TLS: the ClientHello right behind the header, in the same
 * segment, must reach the TLS engine (stream_unread through TLS). */
ITest(integ, proxy_header_then_tls_clienthello_same_segment) {
  h_upstream u;
  h_proxy px;
  char tls[512], cmd[1024], out[2048];
  snprintf(tls, sizeof tls,
           "    tls: implicit\n    certificate: %s/server.crt\n    private_key: %s/server.key\n",
           h_certs(), h_certs());
  start(&px, &u, tls);
  snprintf(cmd, sizeof cmd, "%s %s/pp_tls_client.py %d %s/ca.crt", H_PYTHON, STP_TOOLS_DIR, px.port,
           h_certs());
  int rc = h_run(cmd, NULL, 20000, out, sizeof out);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strncmp(out, "OK 220", 6) == 0, "%s", out);
  expect_log(&px, (const char *const[]){"connect", "client=127.0.0.5", "via=127.0.0.1", NULL});
}

/* Connect, send, and reset at once (SO_LINGER 0) from src. */
static void hit_and_reset(int port, const char *src, const char *data) {
  h_smtp c;
  if (h_smtp_connect_from(&c, port, src) != 0)
    return;
  if (data)
    h_smtp_send(&c, data, strlen(data));
  struct linger lg = {1, 0};
  setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  h_smtp_close(&c);
}

/* A refused connection whose peer resets before the refusal is flushed:
 * the relay has no session to tell, and must just close (it once called
 * into the uninitialised session). Direct refusals and refusals of the
 * client a header named, many times; the proxy must stay up and exit
 * cleanly (teardown checks its exit status and sanitizer output). */
ITest(integ, refused_then_reset_does_not_crash) {
  h_upstream u;
  h_proxy px;
  start(&px, &u, NULL);
  for (int i = 0; i < 40; i++) {
    hit_and_reset(px.port, "127.0.0.9", NULL);
    hit_and_reset(px.port, BALANCER, "PROXY TCP4 127.0.0.9 127.0.0.1 40000 25\r\n");
    hit_and_reset(px.port, BALANCER, "garbage\r\n");
  }
  h_smtp c;
  char text[1024];
  pp_open(&c, px.port, DEVICE, NULL, 0);
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220, "%s", text);
  cr_assert(h_proc_alive(px.proc));
  /* In the test, not only in teardown: a sanitizer's report must fail it. */
  cr_assert_not(h_file_contains(px.log, "runtime error", 13), "UBSan report in %s", px.log);
  cr_assert_not(h_file_contains(px.log, "Sanitizer", 9), "ASan report in %s", px.log);
}

/* Routes' match: client sees the header's address: the device's route
 * rewrites the sender, another device behind the same balancer takes the
 * default route. */
ITest(integ, proxy_header_client_picks_the_route) {
  h_upstream u;
  h_proxy px;
  char yaml[8192];
  h_upstream_start(&u, "starttls", NULL);
  h_proxy_yaml(&(h_proxy_opts){.up_port = u.port, .listener_extra = PP_LISTENER}, yaml,
               sizeof yaml);
  const char *from = "routes:\n  - name: default\n";
  const char *to = "routes:\n  - name: dev5\n    match: { client: [\"127.0.0.5/32\"] }\n"
                   "    upstream: up\n    rewrite: { mail_from: dev5@example.com }\n"
                   "  - name: default\n";
  char *at = strstr(yaml, from);
  cr_assert_not_null(at);
  char rest[4096];
  snprintf(rest, sizeof rest, "%s", at + strlen(from));
  snprintf(at, sizeof yaml - (size_t)(at - yaml), "%s%s", to, rest);
  h_proxy_start_yaml(&px, yaml);
  char text[1024];
  const char *seven = "PROXY TCP4 127.0.0.7 127.0.0.1 40000 25\r\n";
  h_smtp c;
  pp_open(&c, px.port, BALANCER, V1_DEVICE, strlen(V1_DEVICE));
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220, "%s", text);
  cr_assert_eq(h_smtp_cmd(&c, "EHLO printer", text, sizeof text), 250, "%s", text);
  cr_assert_eq(one_message(&c, text, sizeof text), 250, "%s", text);
  h_smtp_close(&c);
  pp_open(&c, px.port, BALANCER, seven, strlen(seven));
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220, "%s", text);
  cr_assert_eq(h_smtp_cmd(&c, "EHLO printer", text, sizeof text), 250, "%s", text);
  cr_assert_eq(one_message(&c, text, sizeof text), 250, "%s", text);
  cr_assert_eq(h_wait_records(u.record, "message", 2, 5000), 2);
  h_lines l;
  h_records(u.record, "message", &l);
  char f0[128], f1[128];
  cr_assert_eq(h_json_str(l.v[0], "mail_from", f0, sizeof f0), 1);
  cr_assert_eq(h_json_str(l.v[1], "mail_from", f1, sizeof f1), 1);
  cr_assert_str_eq(f0, "dev5@example.com", "127.0.0.5 took its route");
  cr_assert_str_eq(f1, "scan@printer.test", "127.0.0.7 took the default route");
  h_lines_free(&l);
}

/* The spool's record of a message keeps the header's client, and the
 * refusals are counted by reason in /metrics. */
ITest(integ, proxy_header_client_in_spool_record_and_metrics) {
  char yaml[8192], yaml2[8192], top[128], text[1024], out[4096], id[32];
  int mport = h_free_port();
  snprintf(top, sizeof top, "metrics: { listen: \"127.0.0.1:%d\" }\n", mport);
  sp_yaml_top(h_free_port(), "starttls", NULL, top, yaml, sizeof yaml); /* upstream down */
  sp_replace(yaml, "    listen: \"127.0.0.1:0\"\n", "    listen: \"127.0.0.1:0\"\n" PP_LISTENER,
             yaml2, sizeof yaml2);
  h_proxy px;
  h_proxy_start_yaml(&px, yaml2);
  h_smtp c;
  pp_open(&c, px.port, BALANCER, V1_DEVICE, strlen(V1_DEVICE));
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220, "%s", text);
  cr_assert_eq(h_smtp_cmd(&c, "EHLO printer", text, sizeof text), 250, "%s", text);
  cr_assert_eq(one_message(&c, text, sizeof text), 250, "%s", text);
  cr_assert(sp_queued_id(text, id), "not spooled: %s", text);
  h_smtp_close(&c);
  char args[64];
  snprintf(args, sizeof args, "show %s", id);
  cr_assert_eq(sp_queue(&px, args, out, sizeof out), 0, "%s", out);
  cr_assert_not_null(strstr(out, "127.0.0.5"), "the record names the device: %s", out);
  cr_assert_null(strstr(out, "127.0.0.1\n"), "%s", out);
  /* Refusals by reason. */
  pp_open(&c, px.port, BALANCER, "EHLO x\r\n", 8);
  expect_refused(&c, 554, "Invalid PROXY");
  pp_open(&c, px.port, DEVICE, NULL, 0);
  cr_assert_eq(h_smtp_reply(&c, H_REPLY_MS, text, sizeof text), 220, "%s", text);
  cr_assert_eq(h_smtp_send(&c, V1_DEVICE, strlen(V1_DEVICE)), 0);
  expect_refused(&c, 554, "not allowed");
  char cmd[256];
  snprintf(cmd, sizeof cmd, "curl -s http://127.0.0.1:%d/metrics", mport);
  static char metrics[65536];
  cr_assert_eq(h_run(cmd, NULL, 10000, metrics, sizeof metrics), 0);
  cr_assert_not_null(strstr(metrics, "smtp_proxy_refused_connections_total{listener=\"lan\","
                                     "reason=\"proxy_header_invalid\"} 1"),
                     "%s", metrics);
  cr_assert_not_null(strstr(metrics, "smtp_proxy_refused_connections_total{listener=\"lan\","
                                     "reason=\"proxy_header_not_allowed\"} 1"),
                     "%s", metrics);
}
