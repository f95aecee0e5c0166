/* apibody.h - HTTP request bodies made from a message kept on disk
 * (msgcopy.h), for the API upstreams: literal bytes (JSON, a Bcc field),
 * byte ranges of the copy, and the decoded bytes of one MIME part, each
 * optionally base64-encoded as one run with its neighbours.
 *
 * Owns: the segment list, a reader of the copy at a time, an output buffer
 * of APIBODY_BUF bytes. Guarantees: the size is known before the first
 * byte (Content-Length); the bytes are produced as the HTTP client asks
 * for them (api_body_read is its body source), never more than
 * APIBODY_BUF ahead, so a 35 MB upload holds a few hundred KiB; file reads
 * run in libuv's thread pool; a read error or a part shorter than its
 * segment makes the source fail (the call ends with HTTP_FAIL_BODY);
 * api_body_free() at any time cancels a read in flight without a callback.
 *
 * A part stream (api_partstream) reads one part's decoded bytes in order
 * and keeps its place between bodies, so the chunks of an upload session
 * are cut from one pass over the part.
 */
#ifndef STP_APIBODY_H
#define STP_APIBODY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http_client.h"
#include "smtp-tls-proxy/apimsg.h"

#define APIBODY_BUF (256 * 1024)

typedef struct api_partstream api_partstream;
api_partstream *api_partstream_new(uv_loop_t *loop, const char *path, const apimsg_part *p);
void api_partstream_free(api_partstream *ps);

typedef struct api_body api_body;
api_body *api_body_new(uv_loop_t *loop, const char *path);
/* Segments, in order. group 0: as they are; consecutive segments with the
 * same group > 0 are base64-encoded together. */
void api_body_lit(api_body *b, const char *p, size_t n, int group);
void api_body_raw(api_body *b, uint64_t off, uint64_t len, int group);
/* The next len decoded bytes of ps (which outlives the body). */
void api_body_part(api_body *b, api_partstream *ps, uint64_t len, int group);
/* All decoded bytes of part p, read when the body gets there. */
void api_body_whole_part(api_body *b, const apimsg_part *p, int group);
uint64_t api_body_size(const api_body *b);
/* The call the body feeds (resumed when bytes arrive). */
void api_body_set_call(api_body *b, http_call *call);
/* Or, for a reader other than the HTTP client: fn(arg) when bytes arrive
 * after api_body_read() returned 0. */
void api_body_set_notify(api_body *b, void (*fn)(void *arg), void *arg);
/* http_body_fn: arg is the api_body. */
long api_body_read(void *arg, char *buf, size_t cap);
/* 0, or the negative errno of a failed read. */
int api_body_error(const api_body *b);
void api_body_free(api_body *b);

#endif
