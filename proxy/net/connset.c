/* connset.c - a small server's connection list and end rule (see connset.h).
 * Pure bookkeeping: no handle is opened or closed here. */
#include "connset.h"

#include <stddef.h>

unsigned connset_add(connset *s, connset_link *c) {
  c->prev = NULL;
  c->next = s->head;
  if (s->head)
    s->head->prev = c;
  s->head = c;
  return ++s->n;
}

void connset_remove(connset *s, connset_link *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    s->head = c->next;
  if (c->next)
    c->next->prev = c->prev;
  c->prev = c->next = NULL;
  s->n--;
}

bool connset_finished(const connset *s) {
  return s->stopping && !s->srv_open && s->n == 0;
}
