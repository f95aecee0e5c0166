/* fuzz_admin.c - the admin request router on untrusted bytes: framing over
 * the HTTP/1 codec, headers, Basic credentials, cookies, form bodies, the
 * routes, and the answer of an authorised request (the password check is
 * crypt(3), too slow to fuzz: it is assumed passed).
 *
 * Input: the request bytes. Invariants: admin_parse answers EAGAIN, 0 or
 * one of the framing statuses; a complete request took at most the input
 * and ADMIN_MAX_REQUEST bytes, and parsing just those bytes gives the same
 * verdict; every answer has a known status, one Content-Security-Policy
 * header and a Content-Length equal to its body; a request's password
 * never appears in the answer; a POST never reaches the queue without the
 * session's CSRF token (the fuzzer cannot know it).
 */
#include "fuzz_common.h"

#include "smtp-tls-proxy/admin.h"

static stp_config *cfg;
static history hist;
static admin A;
static int acts;

static bool f_spool(void *ctx, admin_spool_figs *f) {
  (void)ctx;
  memset(f, 0, sizeof *f);
  return true;
}
static size_t f_queue(void *ctx, admin_qrow *rows, size_t cap) {
  (void)ctx;
  if (cap) {
    memset(rows, 0, sizeof *rows);
    memcpy(rows[0].id, "0123456789abcdef", 17);
  }
  return 1;
}
static int f_act(void *ctx, queuectl_op op, const char *id, const char *by, char *msg, size_t cap) {
  (void)ctx, (void)op, (void)id, (void)by;
  acts++;
  snprintf(msg, cap, "ok");
  return 0;
}
static void f_random(void *ctx, unsigned char *p, size_t n) {
  (void)ctx;
  for (size_t i = 0; i < n; i++)
    p[i] = (unsigned char)(i * 151u + 7u);
}
static const admin_ops OPS = {f_spool, f_queue, f_act, f_random};
static const unsigned char TPL[] = "<html><!--@csrf-meta--><!--@version--><!--@notice-->"
                                   "<!--@upstreams--><!--@spool--><!--@queue-->"
                                   "<!--@deliveries--><!--@test--><!--@unknown--><!--@";
static const admin_asset ASSETS[] = {{"index.html", "text/html", TPL, sizeof TPL - 1},
                                     {"/admin.js", "text/javascript", TPL, 4}};

static void init(void) {
  static const char y[] = "listeners:\n  - name: lan\n    listen: \"127.0.0.1:0\"\n"
                          "upstreams:\n  - name: up\n    host: smtp.example.com\n"
                          "routes:\n  - name: all\n    upstream: up\n"
                          "admin:\n  listen: \"127.0.0.1:8025\"\n  users: { admin: \"$6$x$y\" }\n";
  stp_diag d = {0};
  CHECK(stp_config_load_string("f.yaml", y, sizeof y - 1, &cfg, &d) == 0);
  stp_diag_free(&d);
  history_init(&hist, 4, NULL);
  stp_kv kv[] = {{"result", "delivered"}, {"from", "<x>\"&"}, {"_rcpt_list", "a,b"}};
  history_observe(&hist, 0, "sid", "message", kv, 3);
  admin_init(&A, cfg, &hist, &OPS, NULL, ASSETS, 2, 0);
}

static void check_answer(const admin_req *r, admin_resp *resp) {
  static const int known[] = {200, 400, 401, 403, 404, 405, 409, 411, 413, 429, 431, 501, 502};
  bool ok = false;
  for (size_t i = 0; i < sizeof known / sizeof *known; i++)
    ok |= resp->status == known[i];
  CHECK(ok);
  stp_buf head;
  stp_buf_init(&head, 4096);
  CHECK(admin_resp_head(resp, r->tls, &head) == 0);
  stp_buf_append(&head, "", 1);
  const char *csp = strstr(head.data, "Content-Security-Policy:");
  CHECK(csp && !strstr(csp + 1, "Content-Security-Policy:"));
  char cl[64];
  snprintf(cl, sizeof cl, "\r\nContent-Length: %zu\r\n", resp->body.len);
  CHECK(strstr(head.data, cl));
  if (strlen(r->pass) >= 6)
    CHECK(!memmem(resp->body.data, resp->body.len, r->pass, strlen(r->pass)));
  stp_buf_free(&head);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!cfg)
    init();
  const char *p = (const char *)data;
  admin_req r;
  int rc = admin_parse(p, size, size % 2 == 1, &r);
  CHECK(rc == STP_EAGAIN || rc == 0 || rc == 400 || rc == 411 || rc == 413 || rc == 431 ||
        rc == 501);
  admin_resp resp;
  memset(&resp, 0, sizeof resp);
  if (rc == 0) {
    CHECK(r.total <= size && r.total <= ADMIN_MAX_REQUEST);
    admin_req again;
    CHECK(admin_parse(p, r.total, size % 2 == 1, &again) == 0 && again.act == r.act &&
          again.not_found == r.not_found);
    admin_req_wipe(&again);
    int before = acts;
    admin_action a = admin_handle(&A, &r, 1700000000000, 1000, &resp);
    CHECK(acts == before || a == ADM_QUEUE_ACTION);
    CHECK(acts == before); /* no request can carry the session's token */
    if (a == ADM_TEST)
      admin_test_done(&A, &r, size % 3 == 0, "S: 220 hi\nC: <redacted>\n", 0, &resp);
  } else if (rc != STP_EAGAIN) {
    admin_error(&resp, rc, 1);
  }
  if (resp.status)
    check_answer(&r, &resp);
  admin_resp_free(&resp);
  admin_req_wipe(&r);
  return 0;
}
