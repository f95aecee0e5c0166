/* test_queuectl.c - the control socket's grammar: the command line words,
 * request lines, answer lines. */
#include <criterion/criterion.h>
#include <string.h>

#include "smtp-tls-proxy/queuectl.h"
#include "smtp-tls-proxy/util.h"

#define ID "0189c2f3a4b5c6d7"

static int from_args(const char *a, const char *b, char *line, char *err) {
  char *argv[3] = {(char *)a, (char *)b, NULL};
  int argc = a ? (b ? 2 : 1) : 0;
  return queuectl_from_args(argc, argv, line, 128, err, 256);
}

Test(queuectl, command_line_words) {
  char line[128], err[256];
  cr_assert_eq(from_args("list", NULL, line, err), 0);
  cr_assert_str_eq(line, "LIST\n");
  cr_assert_eq(from_args("show", ID, line, err), 0);
  cr_assert_str_eq(line, "SHOW " ID "\n");
  cr_assert_eq(from_args("retry", NULL, line, err), 0);
  cr_assert_str_eq(line, "RETRY\n");
  cr_assert_eq(from_args("retry", ID, line, err), 0);
  cr_assert_str_eq(line, "RETRY " ID "\n");
  cr_assert_eq(from_args("hold", ID, line, err), 0);
  cr_assert_eq(from_args("release", ID, line, err), 0);
  cr_assert_eq(from_args("delete", ID, line, err), 0);
  cr_assert_str_eq(line, "DELETE " ID "\n");
}

Test(queuectl, command_line_mistakes) {
  char line[128], err[256];
  cr_assert_eq(from_args(NULL, NULL, line, err), STP_ESYNTAX);
  cr_assert_eq(from_args("show", NULL, line, err), STP_ESYNTAX);
  cr_assert_str_eq(err, "usage: queue show ID");
  cr_assert_eq(from_args("list", ID, line, err), STP_ESYNTAX);
  cr_assert_eq(from_args("delete", "../../etc/passwd", line, err), STP_ESYNTAX);
  cr_assert(strstr(err, "is not a spool id"));
  cr_assert_eq(from_args("flush", NULL, line, err), STP_ESYNTAX);
  cr_assert(strstr(err, "unknown queue command 'flush'"));
}

Test(queuectl, request_lines) {
  queuectl_req q;
  cr_assert_eq(queuectl_parse("LIST", 4, &q), 0);
  cr_assert_eq(q.op, QC_LIST);
  cr_assert_eq(queuectl_parse("RETRY", 5, &q), 0);
  cr_assert(q.op == QC_RETRY && q.all);
  cr_assert_eq(queuectl_parse("RETRY " ID, 22, &q), 0);
  cr_assert(q.op == QC_RETRY && !q.all);
  cr_assert_str_eq(q.id, ID);
  cr_assert_eq(queuectl_parse("HOLD " ID "\r", 22, &q), 0);
  cr_assert_eq(q.op, QC_HOLD);
  const char *bad[] = {
      "", "list", "SHOW", "SHOW ../x", "DELETE " ID " x", "LIST " ID, "HOLD 0189C2F3A4B5C6D7"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    cr_assert_eq(queuectl_parse(bad[i], strlen(bad[i]), &q), STP_ESYNTAX, "%s", bad[i]);
  char nul[] = "LIST\0x";
  cr_assert_eq(queuectl_parse(nul, 6, &q), STP_ESYNTAX);
  char big[200];
  memset(big, 'A', sizeof big);
  cr_assert_eq(queuectl_parse(big, sizeof big, &q), STP_ESYNTAX);
}

Test(queuectl, answer_lines) {
  const char *t;
  cr_assert_eq(queuectl_reply(". a line", &t), QC_REPLY_DATA);
  cr_assert_str_eq(t, "a line");
  cr_assert_eq(queuectl_reply(".", &t), QC_REPLY_DATA);
  cr_assert_str_eq(t, "");
  cr_assert_eq(queuectl_reply("OK 3 messages", &t), QC_REPLY_OK);
  cr_assert_str_eq(t, "3 messages");
  cr_assert_eq(queuectl_reply("OK", &t), QC_REPLY_OK);
  cr_assert_eq(queuectl_reply("ERR no message", &t), QC_REPLY_ERR);
  cr_assert_str_eq(t, "no message");
  cr_assert_eq(queuectl_reply("OKAY", &t), QC_REPLY_BAD);
}

static void printable(const char *in, const char *want) {
  char buf[256];
  size_t n = strlen(in);
  memcpy(buf, in, n + 1);
  size_t got = queuectl_printable(buf, n);
  cr_assert_eq(got, strlen(want), "length of '%s'", want);
  cr_assert_eq(memcmp(buf, want, got), 0, "got '%.*s', want '%s'", (int)got, buf, want);
}

Test(queuectl, printable_drops_c0_c1_and_raw_bytes) {
  printable("plain <a@b.example> 451 4.4.1 later", "plain <a@b.example> 451 4.4.1 later");
  printable("a\tb\r\nc\x1b[2Jd\x7f", "a b  c [2Jd ");
  printable("csi \xc2\x9b"
            "2J nel \xc2\x85 end",
            "csi ?2J nel ? end");
  printable("raw \x9b\x80 byte", "raw ?? byte");
  printable("ok \xc3\xa9\xe2\x82\xac\xf0\x9f\x93\xa0", "ok \xc3\xa9\xe2\x82\xac\xf0\x9f\x93\xa0");
  printable("nbsp \xc2\xa0 stays", "nbsp \xc2\xa0 stays");
  printable("overlong \xc0\x80 surrogate \xed\xa0\x80 cut \xe2\x82",
            "overlong ?? surrogate ??? cut ??");
}
