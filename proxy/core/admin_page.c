/* admin_page.c - the admin page, rendered on the server: the template
 * asset (index.html) with its <!--@name--> markers replaced by tables and
 * forms, so the page reads and works without JavaScript (every action is a
 * form that POSTs the session's CSRF token). All text from outside goes
 * through esc_html.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_int.h"
#include "smtp-tls-proxy/esc.h"
#include "smtp-tls-proxy/uphealth.h"

typedef struct page {
  admin *a;
  const admin_req *r;
  int64_t wall_ms;
  const char *notice, *transcript;
  bool notice_ok;
  stp_buf *b;
} page;

static void text(page *p, const char *s) {
  esc_html(p->b, s);
}

static void raw(page *p, const char *s) {
  stp_buf_append(p->b, s, strlen(s));
}

static void cell(page *p, const char *s) {
  raw(p, "<td>");
  text(p, s);
  raw(p, "</td>");
}

static void time_cell(page *p, int64_t s) {
  char t[32] = "";
  if (s > 0)
    history_time_text(s * 1000, t);
  cell(p, t[0] ? t : "never");
}

static void size_text(uint64_t n, char out[32]) {
  if (n >= 10u << 20)
    snprintf(out, 32, "%" PRIu64 " MiB", n >> 20);
  else if (n >= 10u << 10)
    snprintf(out, 32, "%" PRIu64 " KiB", n >> 10);
  else
    snprintf(out, 32, "%" PRIu64 " B", n);
}

/* A hidden CSRF field: only the page that posts it carries the token. */
static void csrf_field(page *p) {
  raw(p, "<input type=\"hidden\" name=\"csrf\" value=\"");
  text(p, p->r->session ? p->r->session->csrf : "");
  raw(p, "\">");
}

static void sec_csrf_meta(page *p) {
  raw(p, "<meta name=\"csrf-token\" content=\"");
  text(p, p->r->session ? p->r->session->csrf : "");
  raw(p, "\">");
}

static void sec_version(page *p) {
  char up[64];
  int64_t s = p->wall_ms / 1000 - p->a->started_s;
  snprintf(up, sizeof up, "%" PRId64 "d %02" PRId64 "h %02" PRId64 "m", s / 86400, s / 3600 % 24,
           s / 60 % 60);
  raw(p, "smtp-tls-proxy " STP_VERSION " on ");
  text(p, p->a->cfg->hostname);
  raw(p, ", up <span id=\"uptime\">");
  text(p, up);
  raw(p, "</span>");
}

static void sec_notice(page *p) {
  if (!p->notice)
    return;
  raw(p, p->notice_ok ? "<p class=\"notice ok\" role=\"status\">"
                      : "<p class=\"notice bad\" role=\"status\">");
  text(p, p->notice);
  raw(p, "</p>");
  if (p->transcript && *p->transcript) {
    raw(p, "<pre class=\"transcript\">");
    text(p, p->transcript);
    raw(p, "</pre>");
  }
}

static void sec_upstreams(page *p) {
  const stp_config *cfg = p->a->cfg;
  for (size_t i = 0; i < cfg->n_upstreams; i++) {
    const stp_upstream_cfg *u = &cfg->upstreams[i];
    uph_status st;
    memset(&st, 0, sizeof st);
    uphealth_get(u->name, &st);
    const char *state = st.state == UPH_UP ? "up" : st.state == UPH_DOWN ? "down" : "unknown";
    raw(p, "<tr data-upstream=\"");
    text(p, u->name);
    raw(p, "\">");
    cell(p, u->name);
    cell(p, u->kind == STP_UP_GRAPH ? "graph" : u->kind == STP_UP_GMAIL ? "gmail" : "smtp");
    raw(p, "<td class=\"state ");
    raw(p, state);
    raw(p, "\">");
    raw(p, state);
    raw(p, "</td>");
    time_cell(p, st.last_success);
    cell(p, st.last_error);
    cell(p, st.hint);
    if (st.token_expiry > 0)
      time_cell(p, st.token_expiry);
    else
      cell(p, "");
    raw(p, "</tr>\n");
  }
}

static void sec_spool(page *p) {
  admin_spool_figs f;
  if (!p->a->ops->spool || !p->a->ops->spool(p->a->ctx, &f)) {
    raw(p, "<p>No spool is configured: every route passes failures on to the device.</p>");
    return;
  }
  char b[32], mb[32];
  size_text(f.bytes, b);
  size_text(f.max_bytes, mb);
  stp_buf_appendf(p->b,
                  "<dl class=\"figs\"><dt>Messages</dt><dd id=\"spool-messages\">%" PRIu64
                  " of %" PRIu64 "</dd><dt>Size</dt><dd id=\"spool-bytes\">%s of %s</dd>"
                  "<dt>Oldest</dt><dd id=\"spool-oldest\">%" PRIu64 " s</dd></dl>",
                  f.messages, f.max_messages, b, mb, f.oldest_s);
}

static void action_form(page *p, const char *id, const char *op, const char *label) {
  raw(p, "<form method=\"post\" class=\"qa\" action=\"/api/queue/");
  text(p, id);
  raw(p, "/");
  raw(p, op);
  raw(p, "\">");
  csrf_field(p);
  raw(p, "<button type=\"submit\" name=\"op\" value=\"");
  raw(p, op);
  raw(p, "\">");
  raw(p, label);
  raw(p, "</button></form>");
}

static void sec_queue(page *p) {
  admin_qrow *rows = stp_xcalloc(ADMIN_QUEUE_ROWS, sizeof *rows);
  size_t all = p->a->ops->queue ? p->a->ops->queue(p->a->ctx, rows, ADMIN_QUEUE_ROWS) : 0;
  size_t n = all < ADMIN_QUEUE_ROWS ? all : ADMIN_QUEUE_ROWS;
  for (size_t i = 0; i < n; i++) {
    const admin_qrow *q = &rows[i];
    char t[32], sz[32], att[16];
    raw(p, "<tr data-id=\"");
    text(p, q->id);
    raw(p, "\">");
    cell(p, q->id);
    history_time_text((int64_t)q->created_ms, t);
    cell(p, t);
    cell(p, q->route);
    cell(p, q->from);
    size_text(q->size, sz);
    cell(p, sz);
    snprintf(att, sizeof att, "%u", q->attempts);
    cell(p, att);
    history_time_text((int64_t)q->next_ms, t);
    cell(p, q->held == 1   ? "held"
            : q->held == 2 ? "held: route missing"
            : q->busy      ? "delivering"
                           : t);
    cell(p, q->last);
    raw(p, "<td class=\"actions\">");
    action_form(p, q->id, "retry", "Retry");
    if (q->held)
      action_form(p, q->id, "release", "Release");
    else
      action_form(p, q->id, "hold", "Hold");
    action_form(p, q->id, "delete", "Delete");
    raw(p, "</td></tr>\n");
  }
  if (all > n)
    stp_buf_appendf(p->b, "<tr><td colspan=\"9\">and %zu more (queue command)</td></tr>", all - n);
  free(rows);
}

static void sec_deliveries(page *p) {
  const history *h = p->a->hist;
  for (size_t i = 0; h && i < ADMIN_PAGE_HISTORY; i++) {
    const history_entry *e = history_get(h, i);
    if (!e)
      break;
    char t[32], sz[32], dur[32];
    history_time_text(e->time_ms, t);
    raw(p, "<tr class=\"");
    raw(p, history_result_name(e->result));
    raw(p, "\">");
    cell(p, t);
    cell(p, history_result_name(e->result));
    cell(p, history_field(e, HF_CLIENT));
    cell(p, history_field(e, HF_LISTENER));
    cell(p, history_field(e, HF_ROUTE));
    cell(p, history_field(e, HF_UPSTREAM));
    cell(p, history_field(e, HF_FROM));
    cell(p, history_field(e, HF_FROM_REWRITTEN));
    char rcpts[2 * HISTORY_RCPTS_MAX + 1];
    size_t o = 0;
    for (const char *c = history_field(e, HF_RCPTS); *c; c++) {
      rcpts[o++] = *c;
      if (*c == ',')
        rcpts[o++] = ' '; /* the session joins them with a bare comma */
    }
    rcpts[o] = '\0';
    cell(p, rcpts);
    size_text(e->size, sz);
    cell(p, sz);
    snprintf(dur, sizeof dur, "%" PRIu64 " ms", e->duration_ms);
    cell(p, dur);
    cell(p, history_field(e, HF_REPLY));
    cell(p, history_field(e, HF_SPOOL_ID));
    raw(p, "</tr>\n");
  }
}

static void sec_test(page *p) {
  const stp_config *cfg = p->a->cfg;
  for (size_t i = 0; i < cfg->n_routes; i++) {
    raw(p, "<form method=\"post\" action=\"/api/test-route\" class=\"test\">");
    csrf_field(p);
    raw(p, "<input type=\"hidden\" name=\"route\" value=\"");
    text(p, cfg->routes[i].name);
    raw(p, "\"><fieldset><legend>Route ");
    text(p, cfg->routes[i].name);
    raw(p, "</legend><label>From <input name=\"from\" type=\"email\" required></label> "
           "<label>To <input name=\"to\" type=\"email\" required></label> "
           "<button type=\"submit\">Send a test message</button></fieldset></form>\n");
  }
}

typedef struct section {
  const char *name;
  void (*fn)(page *p);
} section;

static const section sections[] = {
    {"csrf-meta", sec_csrf_meta},   {"version", sec_version}, {"notice", sec_notice},
    {"upstreams", sec_upstreams},   {"spool", sec_spool},     {"queue", sec_queue},
    {"deliveries", sec_deliveries}, {"test", sec_test},
};

/* The template with each <!--@name--> replaced; unknown markers vanish. */
void admin_page(admin *a, const admin_req *r, int64_t wall_ms, const char *notice, bool notice_ok,
                const char *transcript, stp_buf *b) {
  page p = {a, r, wall_ms, notice, transcript, notice_ok, b};
  const admin_asset *t = NULL;
  for (size_t i = 0; i < a->n_assets; i++)
    if (!strcmp(a->assets[i].path, "index.html"))
      t = &a->assets[i];
  if (!t)
    return;
  const char *s = (const char *)t->data, *end = s + t->len;
  while (s < end) {
    const char *m = memmem(s, (size_t)(end - s), "<!--@", 5);
    if (!m) {
      stp_buf_append(b, s, (size_t)(end - s));
      break;
    }
    stp_buf_append(b, s, (size_t)(m - s));
    const char *close = memmem(m, (size_t)(end - m), "-->", 3);
    if (!close)
      break;
    size_t nl = (size_t)(close - m - 5);
    for (size_t i = 0; i < sizeof sections / sizeof *sections; i++)
      if (strlen(sections[i].name) == nl && !memcmp(sections[i].name, m + 5, nl))
        sections[i].fn(&p);
    s = close + 3;
  }
}
