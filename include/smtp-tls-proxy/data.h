/* data.h - DATA framing between a LAN device and the upstream.
 *
 * Owns: finding the end of data, line-ending policy, dot-unstuffing what the
 * device sent and dot-stuffing what goes upstream, and counting the size.
 * Guarantees: pure and streaming. State between calls is a few flags, so
 * the output for a stream split at any byte offsets equals the output for
 * the whole stream. The output never contains a bare CR or LF, a NUL, or
 * a line consisting of a single "."; the end-of-data marker is not written
 * (the caller sends ".\r\n" only after a clean end).
 *
 * End of data is CRLF "." CRLF only: a line "." ends the message when it
 * and the line before it both ended in CRLF (the DATA command's own CRLF
 * counts as the line before the first). A "." line that does not qualify
 * is content, the text ".", and goes upstream stuffed as ".." CRLF (RFC
 * 5321 4.5.2 removes a leading dot only when other characters follow).
 * bare_lf fix: a bare LF, a bare CR, or CR followed by anything but LF, is
 *   written as CRLF (CR CR LF is one CR then a CRLF: two line ends).
 * bare_lf reject: the first bare LF/CR sets `bare_seen`; the framer keeps
 *   consuming until end of data (the reply 550 5.5.2 is then the caller's),
 *   writing nothing more.
 * bare_lf lenient (data_framer_allow_lf_end): as fix, and a "." line that
 *   ends in a bare LF after a line that ended in a bare LF also ends the
 *   message (LF "." LF), for trusted devices whose every line ends in LF.
 *   The DATA command's own line end counts as either kind. Mixed forms
 *   (CRLF "." LF, LF "." CRLF, anything with a bare CR) stay content.
 *   Safe only because the output is re-framed: the upstream never sees
 *   the ambiguity. Without it, such an LF "." LF is content and sets
 *   `lflf_seen`, so the caller can tell the admin why the device hangs.
 * NUL, in every mode: SMTP text has no NUL (we offer no BINARYMIME), and a
 *   next hop that drops NULs turns CRLF NUL "." CRLF into an end of data.
 *   The first NUL sets `nul_seen`; nothing from it on is written (the bytes
 *   before it are), the framer consumes to the real end of data, and the
 *   caller refuses the message (550 5.6.0) without a final dot upstream.
 */
#ifndef STP_DATA_H
#define STP_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct data_framer {
  bool reject_bare;  /* bare_lf: reject */
  uint64_t max_size; /* 0 = no limit */
  uint64_t size;     /* bytes of message content seen so far (after
                        unstuffing, line ends counted as CRLF, stuffing
                        dots not counted); keeps counting after too_big
                        so the log shows what the client tried to send */
  bool too_big;      /* size went over max_size; output stopped */
  bool bare_seen;    /* a bare LF/CR was seen (set in both modes; only
                        reject stops the output) */
  bool nul_seen;     /* a NUL byte was seen; output stopped before it */
  bool lflf_seen;    /* LF "." LF was taken as content (not lenient) */
  bool done;         /* end of data found */
  bool lf_end;       /* bare_lf: lenient (LF "." LF ends the message) */
  /* internal line state, see data.c */
  unsigned char state; /* where in a line the last byte left us */
  bool prev_crlf;      /* the previous line ended in a real CRLF */
  bool prev_lf;        /* the previous line ended in a bare LF */
} data_framer;

void data_framer_init(data_framer *f, bool reject_bare, uint64_t max_size);
/* bare_lf: lenient. Call right after data_framer_init (not with reject). */
void data_framer_allow_lf_end(data_framer *f);

/* Emit callback: bytes for upstream, already CRLF-normalised and
 * dot-stuffed. May be called several times per feed. */
typedef void (*data_emit_fn)(void *ctx, const char *p, size_t n);

/* Consume client bytes. Returns the number of bytes consumed: all of them,
 * or fewer when end of data was found (f->done set; bytes after it belong
 * to the next command and are left for the caller). Nothing is emitted
 * once too_big, nul_seen or bare_seen (with reject) is set. */
size_t data_framer_feed(data_framer *f, const char *in, size_t len, data_emit_fn emit, void *ctx);

/* Dot-stuff a block of text that is already CRLF-framed (for messages the
 * proxy writes itself, e.g. --test-route). Output via emit. */
void data_stuff_block(const char *in, size_t len, data_emit_fn emit, void *ctx);

#endif
