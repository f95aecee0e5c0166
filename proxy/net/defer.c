/* defer.c - the loop-wide queue of deferred calls (see defer.h).
 *
 * One uv_idle_t, started only while items wait: an active idle handle makes
 * the loop poll without blocking, so a queued call runs in the same turn's
 * idle phase or the next one, and a stopped one costs nothing. The queue is
 * detached before it runs, so items posted by a running item wait for the
 * next turn.
 */
#include "defer.h"

#include <assert.h>
#include <stddef.h>

static struct {
  uv_loop_t *loop;
  uv_idle_t idle;
  defer_item *head, *tail;
  unsigned long turn; /* counts runs of the queue */
  bool closed;
} g_defer;

static void unlink_item(defer_item *it) {
  if (it->prev)
    it->prev->next = it->next;
  else
    g_defer.head = it->next;
  if (it->next)
    it->next->prev = it->prev;
  else
    g_defer.tail = it->prev;
  it->prev = it->next = NULL;
  it->queued = false;
}

static void idle_cb(uv_idle_t *h) {
  /* Run only what was queued before this run began. */
  unsigned long run = ++g_defer.turn;
  while (g_defer.head && g_defer.head->turn != run) {
    defer_item *it = g_defer.head;
    unlink_item(it);
    it->fn(it->arg);
  }
  if (!g_defer.head)
    uv_idle_stop(h);
}

void defer_post(uv_loop_t *loop, defer_item *it, void (*fn)(void *arg), void *arg) {
  if (!g_defer.loop) {
    g_defer.loop = loop;
    uv_idle_init(loop, &g_defer.idle);
  }
  assert(loop == g_defer.loop && !g_defer.closed);
  it->fn = fn;
  it->arg = arg;
  if (it->queued)
    return;
  it->queued = true;
  it->turn = g_defer.turn; /* during a run: that run, so it waits */
  it->next = NULL;
  it->prev = g_defer.tail;
  if (g_defer.tail)
    g_defer.tail->next = it;
  else
    g_defer.head = it;
  g_defer.tail = it;
  uv_idle_start(&g_defer.idle, idle_cb);
}

void defer_cancel(defer_item *it) {
  if (it && it->queued)
    unlink_item(it);
}

bool defer_queued(const defer_item *it) {
  return it->queued;
}

void defer_shutdown(void) {
  if (!g_defer.loop || g_defer.closed)
    return;
  g_defer.closed = true;
  uv_close((uv_handle_t *)&g_defer.idle, NULL);
}
