/* json.h - JSON through jansson, set up for documents that carry secrets.
 *
 * Owns: jansson's allocation functions, process-wide: every block jansson
 * allocates (values, keys, the lexer's buffers) is wiped before it is freed,
 * so a token in an answer does not outlive the document. Guarantees:
 * stp_json_load() reads exactly one object or array, refuses duplicate keys
 * (JSON_REJECT_DUPLICATES), trailing bytes, NUL in strings and invalid
 * UTF-8, and nesting deeper than the caller's bound.
 */
#ifndef STP_JSON_H
#define STP_JSON_H

#include <jansson.h>
#include <stddef.h>

/* Install the wiping allocator; idempotent, and done by stp_json_load. It
 * must run before any other jansson call, which it does in this process
 * because nothing else uses jansson. */
void stp_json_init(void);

/* Parse p[0..n): NULL and STP_ESYNTAX in *err for anything but a valid
 * document nested at most max_depth levels (the outer object is level 1).
 * Release the result with json_decref(). */
json_t *stp_json_load(const char *p, size_t n, unsigned max_depth, int *err);

/* For tests: fn sees every block after it was wiped and before it is
 * freed (NULL to stop). */
void stp_json_set_free_hook(void (*fn)(const unsigned char *p, size_t n));

#endif
