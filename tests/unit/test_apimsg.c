/* test_apimsg.c - the pure half of the API upstreams: unstuffing, the
 * headers and parts gathered while a message streams, the recipients rule
 * (Bcc for envelope recipients not in To/Cc), Graph's body and attachment
 * choice and its JSON (parsed back with jansson), base64 as a stream, and
 * path escaping. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtp-tls-proxy/apimsg.h"

static mime_reader R;

static void gather(const char *msg, apimsg_info *m) {
  apimsg_info_init(m);
  mime_reader_init(&R, apimsg_on_mime, m);
  mime_feed(&R, msg, strlen(msg));
  mime_finish(&R);
}

static json_t *parse(const char *s) {
  json_error_t e;
  json_t *v = json_loads(s, 0, &e);
  cr_assert_not_null(v, "not JSON (%s): %s", e.text, s);
  return v;
}

static const char *jget(json_t *o, const char *path) {
  /* "a.b.c" through objects; "[i]" not needed here */
  char buf[200];
  snprintf(buf, sizeof buf, "%s", path);
  json_t *v = o;
  for (char *tok = strtok(buf, "."); tok && v; tok = strtok(NULL, "."))
    v = json_object_get(v, tok);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

Test(apimsg, unstuff_split_anywhere) {
  const char *in = "..dot\r\nx.y\r\n...\r\n.\r\nend\r\n";
  const char *want = ".dot\r\nx.y\r\n..\r\n\r\nend\r\n";
  for (size_t cut = 0; cut <= strlen(in); cut++) {
    apimsg_unstuff u = {0};
    char out[64];
    size_t o = apimsg_unstuff_feed(&u, in, cut, out);
    o += apimsg_unstuff_feed(&u, in + cut, strlen(in) - cut, out + o);
    out[o] = '\0';
    cr_assert_str_eq(out, want, "cut %zu", cut);
  }
}

static const char *MSG = "From: \"Office Scanner\" <scanner@contoso.example>\r\n"
                         "To: Anna <anna@contoso.example>, bob@contoso.example\r\n"
                         "Cc: =?utf-8?Q?J=C3=B6rg?= <joerg@contoso.example>\r\n"
                         "Reply-To: desk@contoso.example\r\n"
                         "Subject: =?iso-8859-1?Q?Scan_f=FCr_Anna?=\r\n"
                         "Message-ID: <scan.42@printer.contoso.example>\r\n"
                         "MIME-Version: 1.0\r\n"
                         "Content-Type: multipart/mixed; boundary=m\r\n"
                         "\r\n"
                         "--m\r\n"
                         "Content-Type: multipart/alternative; boundary=a\r\n"
                         "\r\n"
                         "--a\r\n"
                         "Content-Type: text/plain; charset=utf-8\r\n"
                         "\r\n"
                         "plain body\r\n"
                         "--a\r\n"
                         "Content-Type: text/html; charset=utf-8\r\n"
                         "\r\n"
                         "<p>html body <img src=\"cid:logo@x\"></p>\r\n"
                         "--a--\r\n"
                         "--m\r\n"
                         "Content-Type: image/png\r\n"
                         "Content-ID: <logo@x>\r\n"
                         "Content-Transfer-Encoding: base64\r\n"
                         "\r\n"
                         "iVBORw0KGgo=\r\n"
                         "--m\r\n"
                         "Content-Type: application/pdf\r\n"
                         "Content-Disposition: attachment; filename=\"scan.pdf\"\r\n"
                         "Content-Transfer-Encoding: base64\r\n"
                         "\r\n"
                         "JVBERi0xLjQK\r\n"
                         "--m\r\n"
                         "Content-Type: application/octet-stream\r\n"
                         "Content-Transfer-Encoding: base64\r\n"
                         "\r\n"
                         "AAEC\r\n"
                         "--m--\r\n";

Test(apimsg, gathers_headers_and_parts) {
  apimsg_info m;
  gather(MSG, &m);
  size_t pos = 0;
  const char *name;
  cr_assert_str_eq(apimsg_addrs_next(&m.from, &pos, &name), "scanner@contoso.example");
  cr_assert_str_eq(name, "Office Scanner");
  cr_assert_eq(m.to.n, 2);
  cr_assert(apimsg_addrs_has(&m.to, "BOB@contoso.example"), "any case");
  pos = 0;
  cr_assert_str_eq(apimsg_addrs_next(&m.cc, &pos, &name), "joerg@contoso.example");
  cr_assert_str_eq(name, "Jörg");
  cr_assert_str_eq(m.subject, "Scan für Anna");
  cr_assert_str_eq(m.message_id, "<scan.42@printer.contoso.example>");
  cr_assert_eq(m.nparts, 5);
  cr_assert_str_eq(m.parts[3].type, "application/pdf");
  cr_assert_eq(m.parts[3].size, 9);
  cr_assert(!strncmp(MSG + m.parts[3].start, "JVBERi0xLjQK", 12), "byte range");
  bool html;
  long body = apimsg_body_part(&m, &html);
  cr_assert_eq(body, 1);
  cr_assert(html);
  cr_assert(!apimsg_is_attachment(&m, 0, body), "the plain alternative is not attached");
  cr_assert(!apimsg_is_attachment(&m, 1, body));
  cr_assert(apimsg_is_attachment(&m, 2, body));
  cr_assert(apimsg_is_attachment(&m, 3, body));
  cr_assert(apimsg_is_attachment(&m, 4, body));
  char nm[64];
  apimsg_part_name(&m, 2, nm, sizeof nm);
  cr_assert_str_eq(nm, "attachment-3.png");
  apimsg_part_name(&m, 3, nm, sizeof nm);
  cr_assert_str_eq(nm, "scan.pdf");
  apimsg_part_name(&m, 4, nm, sizeof nm);
  cr_assert_str_eq(nm, "attachment-5.bin");
  apimsg_info_free(&m);
}

Test(apimsg, bcc_for_envelope_recipients_not_in_headers) {
  apimsg_info m;
  gather(MSG, &m);
  const char *env[] = {"anna@contoso.example", "JOERG@contoso.example", "hidden@contoso.example",
                       "hidden@contoso.example", "audit@archive.example"};
  stp_buf b;
  stp_buf_init(&b, 4096);
  cr_assert_eq(apimsg_bcc_field(&m, env, 5, &b), 0);
  cr_assert_eq(b.len, strlen("Bcc: hidden@contoso.example, audit@archive.example\r\n"));
  cr_assert(!memcmp(b.data, "Bcc: hidden@contoso.example, audit@archive.example\r\n", b.len));
  cr_assert_eq(apimsg_header_only(&m, env, 5), 1, "bob is in To but not in the envelope");
  b.len = 0;
  cr_assert_eq(apimsg_bcc_field(&m, env, 2, &b), 0);
  cr_assert_eq(b.len, 0, "all in To/Cc: no Bcc field");
  /* Folding: lines stay under 78 columns. */
  char addrs[10][40];
  const char *many[10];
  for (int i = 0; i < 10; i++) {
    snprintf(addrs[i], sizeof addrs[i], "recipient-number-%02d@example.org", i);
    many[i] = addrs[i];
  }
  b.len = 0;
  cr_assert_eq(apimsg_bcc_field(&m, many, 10, &b), 0);
  size_t col = 0;
  for (size_t i = 0; i < b.len; i++) {
    col = b.data[i] == '\n' ? 0 : col + 1;
    cr_assert_lt(col, 78);
  }
  cr_assert(!memcmp(b.data + b.len - 2, "\r\n", 2));
  stp_buf_free(&b);
  apimsg_info_free(&m);
}

Test(apimsg, graph_message_json) {
  apimsg_info m;
  gather(MSG, &m);
  const char *env[] = {"anna@contoso.example", "joerg@contoso.example", "hidden@contoso.example"};
  char *s = apimsg_graph_message(&m, env, 3, "<p>hi</p>", 9, true, false, 1 << 20);
  json_t *v = parse(s);
  cr_assert_str_eq(jget(v, "subject"), "Scan für Anna");
  cr_assert_str_eq(jget(v, "body.contentType"), "html");
  cr_assert_str_eq(jget(v, "body.content"), "<p>hi</p>");
  cr_assert_str_eq(jget(v, "from.emailAddress.address"), "scanner@contoso.example");
  cr_assert_str_eq(jget(v, "from.emailAddress.name"), "Office Scanner");
  cr_assert_str_eq(jget(v, "internetMessageId"), "<scan.42@printer.contoso.example>");
  json_t *to = json_object_get(v, "toRecipients");
  cr_assert_eq(json_array_size(to), 1, "bob is not an envelope recipient");
  cr_assert_str_eq(jget(json_array_get(to, 0), "emailAddress.address"), "anna@contoso.example");
  cr_assert_str_eq(jget(json_array_get(to, 0), "emailAddress.name"), "Anna");
  cr_assert_eq(json_array_size(json_object_get(v, "ccRecipients")), 1);
  json_t *bcc = json_object_get(v, "bccRecipients");
  cr_assert_eq(json_array_size(bcc), 1);
  cr_assert_str_eq(jget(json_array_get(bcc, 0), "emailAddress.address"), "hidden@contoso.example");
  cr_assert_eq(json_array_size(json_object_get(v, "replyTo")), 1);
  json_decref(v);
  free(s);
  cr_assert_null(apimsg_graph_message(&m, env, 3, "x", 1, false, false, 100), "over max");

  /* sendMail with the attachments streamed after the head. */
  s = apimsg_graph_message(&m, env, 3, "b", 1, false, true, 1 << 20);
  char *att = apimsg_graph_attachment_head(&m, 3);
  char full[8192];
  snprintf(full, sizeof full, "%s%sJVBERi0xLjQK%s]},\"saveToSentItems\":false}", s, att,
           APIMSG_ATTACH_TAIL);
  v = parse(full);
  cr_assert(json_is_false(json_object_get(v, "saveToSentItems")));
  json_t *a0 = json_array_get(json_object_get(json_object_get(v, "message"), "attachments"), 0);
  cr_assert_str_eq(json_string_value(json_object_get(a0, "@odata.type")),
                   "#microsoft.graph.fileAttachment");
  cr_assert_str_eq(jget(a0, "name"), "scan.pdf");
  cr_assert_str_eq(jget(a0, "contentType"), "application/pdf");
  cr_assert_str_eq(jget(a0, "contentBytes"), "JVBERi0xLjQK");
  cr_assert(json_is_false(json_object_get(a0, "isInline")));
  json_decref(v);
  free(att);
  free(s);
  /* The inline image: isInline and contentId, for the HTML's cid: link. */
  att = apimsg_graph_attachment_head(&m, 2);
  snprintf(full, sizeof full, "%siVBORw0KGgo=%s", att, APIMSG_ATTACH_TAIL);
  v = parse(full);
  cr_assert(json_is_true(json_object_get(v, "isInline")));
  cr_assert_str_eq(jget(v, "contentId"), "logo@x");
  json_decref(v);
  free(att);
  s = apimsg_graph_upload_session(&m, 3);
  v = parse(s);
  json_t *item = json_object_get(v, "AttachmentItem");
  cr_assert_str_eq(jget(item, "attachmentType"), "file");
  cr_assert_str_eq(jget(item, "name"), "scan.pdf");
  cr_assert_eq(json_integer_value(json_object_get(item, "size")), 9);
  json_decref(v);
  free(s);
  apimsg_info_free(&m);
}

Test(apimsg, eight_bit_headers_become_valid_utf8_json) {
  apimsg_info m;
  gather("From: M\xfcller <m@x.example>\r\nSubject: Gr\xfc\xdf"
         "e\r\nTo: a@x.example\r\n\r\nb\r\n",
         &m);
  const char *env[] = {"a@x.example"};
  char *s = apimsg_graph_message(&m, env, 1, "b", 1, false, false, 4096);
  json_t *v = parse(s);
  cr_assert_str_eq(jget(v, "subject"), "Grüße");
  cr_assert_str_eq(jget(v, "from.emailAddress.name"), "Müller");
  json_decref(v);
  free(s);
  bool html;
  cr_assert_eq(apimsg_body_part(&m, &html), 0, "a single text part is the body");
  apimsg_info_free(&m);
}

Test(apimsg, responses) {
  char out[64];
  uint64_t at;
  cr_assert(apimsg_json_str("{\"id\":\"AAMk=\",\"x\":1}", 20, "id", out, sizeof out));
  cr_assert_str_eq(out, "AAMk=");
  cr_assert(!apimsg_json_str("{\"id\":7}", 8, "id", out, sizeof out));
  cr_assert(!apimsg_json_str("[]", 2, "id", out, sizeof out));
  const char *r = "{\"expirationDateTime\":\"x\",\"nextExpectedRanges\":[\"3932160\"]}";
  cr_assert(apimsg_next_range(r, strlen(r), &at));
  cr_assert_eq(at, 3932160);
  r = "{\"nextExpectedRanges\":[\"0-\"]}";
  cr_assert(apimsg_next_range(r, strlen(r), &at));
  cr_assert_eq(at, 0);
  r = "{\"nextExpectedRanges\":[\"x\"]}";
  cr_assert(!apimsg_next_range(r, strlen(r), &at));
}

Test(apimsg, base64_stream_any_split) {
  unsigned char in[100];
  for (int i = 0; i < 100; i++)
    in[i] = (unsigned char)(i * 37 + 11);
  char whole[200];
  apimsg_b64 b = {{0}, 0};
  size_t n = apimsg_b64_update(&b, in, 100, whole);
  n += apimsg_b64_final(&b, whole + n);
  cr_assert_eq(n, apimsg_b64_len(100));
  for (size_t c1 = 0; c1 <= 100; c1 += 7)
    for (size_t c2 = c1; c2 <= 100; c2 += 5) {
      char out[200];
      apimsg_b64 s = {{0}, 0};
      size_t o = apimsg_b64_update(&s, in, c1, out);
      o += apimsg_b64_update(&s, in + c1, c2 - c1, out + o);
      o += apimsg_b64_update(&s, in + c2, 100 - c2, out + o);
      o += apimsg_b64_final(&s, out + o);
      cr_assert_eq(o, n);
      cr_assert(!memcmp(out, whole, n));
    }
  char out[8];
  b = (apimsg_b64){{0}, 0};
  n = apimsg_b64_update(&b, "ab", 2, out);
  n += apimsg_b64_final(&b, out + n);
  cr_assert_eq(n, 4);
  cr_assert(!memcmp(out, "YWI=", 4));
}

Test(apimsg, path_escape) {
  char out[64];
  cr_assert(apimsg_path_escape("scan@contoso.example", out, sizeof out));
  cr_assert_str_eq(out, "scan@contoso.example");
  cr_assert(apimsg_path_escape("AAMk/x+y=?#% ", out, sizeof out));
  cr_assert_str_eq(out, "AAMk%2Fx+y=%3F%23%25%20");
  cr_assert(!apimsg_path_escape("abcdef", out, 4));
}

/* Graph's 201 for a draft echoes the whole message: the top-level "id" is
 * found wherever it stands, at any split of the stream, never a nested
 * "id" or a value that reads "id". */
Test(apimsg, scan_finds_the_top_level_member_at_any_split) {
  static const char doc[] =
      "{\"@odata.etag\":\"W/\\\"CQ\\\"\",\"subject\":\"id\",\"body\":{\"id\":\"nested\","
      "\"content\":\"x\\\"id\\\":\\\"fake\\\"\"},\"from\":[{\"id\":\"in-array\"}],"
      "\"n\":12,\"ok\":true, \"id\" : \"AAMkAD\\u0041\\/x=\",\"id\":\"second\"}";
  size_t n = strlen(doc);
  for (size_t cut = 0; cut <= n; cut++) {
    apimsg_scan s;
    apimsg_scan_init(&s, "id");
    apimsg_scan_feed(&s, doc, cut);
    apimsg_scan_feed(&s, doc + cut, n - cut);
    cr_assert(s.found, "cut %zu", cut);
    cr_assert_str_eq(s.value, "AAMkADA/x=", "cut %zu", cut);
  }
  apimsg_scan s;
  apimsg_scan_init(&s, "id");
  for (size_t i = 0; i < n; i++)
    apimsg_scan_feed(&s, doc + i, 1);
  cr_assert_str_eq(s.value, "AAMkADA/x=");
  /* Megabytes of echoed body before it: constant memory, still found. */
  apimsg_scan_init(&s, "uploadUrl");
  apimsg_scan_feed(&s, "{\"contentBytes\":\"", 17);
  char chunk[4096];
  memset(chunk, 'A', sizeof chunk);
  for (int i = 0; i < 1024; i++)
    apimsg_scan_feed(&s, chunk, sizeof chunk);
  static const char tail[] = "\",\"uploadUrl\":\"https:\\/\\/up.example\\/u?a=1\"}";
  apimsg_scan_feed(&s, tail, strlen(tail));
  cr_assert(s.found);
  cr_assert_str_eq(s.value, "https://up.example/u?a=1");
  /* Not a string, over the bound, or non-ASCII escapes: no value. */
  const char *none[] = {"{\"id\":12}",    "{\"id\":null,\"x\":\"y\"}", "{\"id\":\"\\u00e9\"}",
                        "[\"id\",\"x\"]", "{\"a\":{\"id\":\"x\"}}",    "{\"id\":\"\"}"};
  for (size_t i = 0; i < sizeof none / sizeof *none; i++) {
    apimsg_scan_init(&s, "id");
    apimsg_scan_feed(&s, none[i], strlen(none[i]));
    cr_assert(!s.found, "%s", none[i]);
  }
  char *big = malloc(APIMSG_SCAN_VALUE_MAX + 32);
  int k = sprintf(big, "{\"id\":\"");
  memset(big + k, 'x', APIMSG_SCAN_VALUE_MAX);
  strcpy(big + k + APIMSG_SCAN_VALUE_MAX, "\"}");
  apimsg_scan_init(&s, "id");
  apimsg_scan_feed(&s, big, strlen(big));
  cr_assert(!s.found, "a value over the bound is no value");
  free(big);
}

/* RFC 2183: an inline text part with a file name (or only name= on its
 * type) is the body; an attachment is not; text attachments keep their
 * charset in contentType. */
Test(apimsg, inline_named_text_is_the_body_and_text_attachments_keep_their_charset) {
  static const char *const msgs[] = {
      "From: a@x.example\r\nTo: b@x.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
      "--b\r\nContent-Type: text/plain; charset=utf-8\r\n"
      "Content-Disposition: inline; filename=\"scan.txt\"\r\n\r\nScan text\r\n"
      "--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
      "Content-Disposition: attachment; filename=\"log.txt\"\r\n\r\nLog\xe9\r\n--b--\r\n",
      "From: a@x.example\r\nTo: b@x.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
      "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
      "--b\r\nContent-Type: text/plain; charset=utf-8; name=\"scan.txt\"\r\n\r\nScan text\r\n"
      "--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
      "Content-Disposition: attachment; filename=\"log.txt\"\r\n\r\nLog\xe9\r\n--b--\r\n",
  };
  for (size_t k = 0; k < 2; k++) {
    apimsg_info m;
    gather(msgs[k], &m);
    cr_assert_eq(m.nparts, 2);
    bool html;
    long body = apimsg_body_part(&m, &html);
    cr_assert_eq(body, 0, "message %zu: the inline named text is the body", k);
    cr_assert(!apimsg_is_attachment(&m, 0, body));
    cr_assert(apimsg_is_attachment(&m, 1, body));
    char *head = apimsg_graph_attachment_head(&m, 1);
    cr_assert(strstr(head, "\"contentType\":\"text/plain; charset=iso-8859-1\""), "%s", head);
    cr_assert(strstr(head, "\"name\":\"log.txt\""), "%s", head);
    free(head);
    apimsg_info_free(&m);
  }
}

/* More parts than the table keeps are flagged (apisend refuses the JSON
 * path for them: never a silent loss). */
Test(apimsg, parts_over_the_bound_are_flagged) {
  size_t cap = (APIMSG_PARTS_MAX + 2) * 64 + 512;
  char *msg = malloc(cap);
  int o = sprintf(msg, "From: a@x.example\r\nTo: b@x.example\r\nMIME-Version: 1.0\r\n"
                       "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
  for (int i = 0; i <= APIMSG_PARTS_MAX; i++)
    o += sprintf(msg + o, "--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i);
  sprintf(msg + o, "--b--\r\n");
  apimsg_info m;
  gather(msg, &m);
  cr_assert_eq(m.nparts, APIMSG_PARTS_MAX);
  cr_assert(m.parts_dropped);
  apimsg_info_free(&m);
  free(msg);
}

/* A message piped from a mailbox file starts with an mbox "From " line:
 * dropped (as Python's email does), the fields after it still read. */
Test(apimsg, mbox_from_line_is_not_the_end_of_the_header) {
  apimsg_info m;
  gather("From MAILER-DAEMON Fri Apr 06 16:46:09 2001\r\nFrom: a@x.example\r\n"
         "Subject: Returned mail\r\nTo: b@x.example\r\n\r\nbody\r\n",
         &m);
  cr_assert_str_eq(m.subject, "Returned mail");
  cr_assert_eq(m.from.n, 1);
  cr_assert_eq(m.nparts, 1);
  apimsg_info_free(&m);
}

/* A multipart that never writes its boundary: its text is one leaf of its
 * own (as Python's email reads it), not dropped as a preamble. */
Test(apimsg, multipart_without_a_boundary_keeps_its_text) {
  static const char msg[] = "From: a@x.example\r\nTo: b@x.example\r\nMIME-Version: 1.0\r\n"
                            "Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n"
                            "Hi there,\r\n\r\nThis is the dingus fish.\r\n";
  apimsg_info m;
  gather(msg, &m);
  cr_assert_eq(m.nparts, 1);
  cr_assert_str_eq(m.parts[0].type, "multipart/mixed");
  const char *text = strstr(msg, "Hi there");
  cr_assert_eq(m.parts[0].start, (uint64_t)(text - msg));
  cr_assert_eq(m.parts[0].size, strlen(text));
  bool html;
  cr_assert(apimsg_is_attachment(&m, 0, apimsg_body_part(&m, &html)));
  apimsg_info_free(&m);
  /* An ordinary multipart is no leaf of its own. */
  gather("Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n\r\nx\r\n--b--\r\n", &m);
  cr_assert_eq(m.nparts, 1);
  cr_assert_str_eq(m.parts[0].type, "text/plain");
  apimsg_info_free(&m);
}
