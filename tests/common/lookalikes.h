/* lookalikes.h - every end-of-data look-alike that public SMTP smuggling
 * tools try (hannob's smtpsmug, SEC Consult's list, smtp_smuggling_checker),
 * shared by the framer's unit tests and the end-to-end smuggling tests. */
#ifndef STP_TEST_LOOKALIKES_H
#define STP_TEST_LOOKALIKES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct lookalike {
  const char *name;
  const char *bytes;
  size_t len;
  bool bare; /* contains a bare CR or LF: bare_lf: reject must refuse it */
  bool nul;  /* contains a NUL: refused in every mode (550 5.6.0) */
} lookalike;

#define LA(name, s, bare, nul)                                                                     \
  { name, s, sizeof s - 1, bare, nul }
static const lookalike lookalikes[] = {
    /* smtpsmug: lflf crcr crlf lfcr lfcrlf crlflf crcrlf crlfcr nullbefore
     * nullafter; SEC Consult adds the last two of this block. */
    LA("LF.LF", "\n.\n", true, false),
    LA("CR.CR", "\r.\r", true, false),
    LA("CR.LF", "\r.\n", true, false),
    LA("LF.CR", "\n.\r", true, false),
    LA("LF.CRLF", "\n.\r\n", true, false),
    LA("CRLF.LF", "\r\n.\n", true, false),
    LA("CR.CRLF", "\r.\r\n", true, false),
    LA("CRLF.CR", "\r\n.\r", true, false),
    LA("CRLF NUL.CRLF", "\r\n\0.\r\n", false, true),
    LA("CRLF.NUL CRLF", "\r\n.\0\r\n", false, true),
    LA("CRLF.CR CRLF", "\r\n.\r\r\n", true, false),
    LA("CR CRLF.CR CRLF", "\r\r\n.\r\r\n", true, false),
    /* smtp_smuggling_checker */
    LA("CRLF NUL.CR", "\r\n\0.\r", true, true),
    LA("CRLF NUL.LF", "\r\n\0.\n", true, true),
    LA("CRLF.", "\r\n.", false, false),
    LA("LF LF.CRLF", "\n\n.\r\n", true, false),
    LA("LF.", "\n.", true, false),
};
#undef LA
#define N_LA (sizeof lookalikes / sizeof *lookalikes)

#endif
