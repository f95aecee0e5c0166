/* json.c - jansson with a wiping allocator (see json.h).
 *
 * jansson's free function gets no size, so each block carries its size in
 * a header in front of it, padded to max_align_t to keep the block aligned.
 */
#include "smtp-tls-proxy/json.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "smtp-tls-proxy/util.h"

#define HDR (sizeof(max_align_t) > sizeof(size_t) ? sizeof(max_align_t) : sizeof(size_t))

static bool g_ready;
static void (*g_free_hook)(const unsigned char *p, size_t n);

static void *wipe_malloc(size_t n) {
  if (n > SIZE_MAX - HDR)
    return NULL;
  unsigned char *b = malloc(HDR + n);
  if (!b)
    return NULL;
  *(size_t *)(void *)b = n;
  return b + HDR;
}

static void wipe_free(void *p) {
  if (!p)
    return;
  unsigned char *b = (unsigned char *)p - HDR;
  size_t n = *(size_t *)(void *)b;
  stp_cleanse(p, n);
  if (g_free_hook)
    g_free_hook(p, n);
  free(b);
}

void stp_json_init(void) {
  if (g_ready)
    return;
  json_set_alloc_funcs(wipe_malloc, wipe_free);
  g_ready = true;
}

void stp_json_set_free_hook(void (*fn)(const unsigned char *p, size_t n)) {
  g_free_hook = fn;
}

static bool depth_ok(const json_t *v, unsigned left) {
  if (!json_is_object(v) && !json_is_array(v))
    return true;
  if (left == 0)
    return false;
  if (json_is_array(v)) {
    for (size_t i = 0; i < json_array_size(v); i++)
      if (!depth_ok(json_array_get(v, i), left - 1))
        return false;
    return true;
  }
  const char *k;
  const json_t *e;
  json_object_foreach((json_t *)v, k, e) {
    if (!depth_ok(e, left - 1))
      return false;
  }
  return true;
}

json_t *stp_json_load(const char *p, size_t n, unsigned max_depth, int *err) {
  stp_json_init();
  json_error_t je;
  json_t *v = json_loadb(p, n, JSON_REJECT_DUPLICATES, &je);
  stp_cleanse(&je, sizeof je); /* its text may quote the input */
  if (v && !depth_ok(v, max_depth)) {
    json_decref(v);
    v = NULL;
  }
  *err = v ? STP_OK : STP_ESYNTAX;
  return v;
}
