// admin.js - makes the admin page live: queue buttons act without a page
// load (POST with the session's CSRF token in X-CSRF-Token) and the tables
// refresh every 5 seconds from the JSON API. The page works without it.
// Text only ever goes in through textContent: nothing is parsed as HTML.
'use strict';
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;

  function td(tr, text, cls) {
    const c = document.createElement('td');
    c.textContent = text === null || text === undefined ? '' : String(text);
    if (cls) c.className = cls;
    tr.appendChild(c);
    return c;
  }

  // as the server renders it (no bit shifts: they wrap at 2 GiB in JS)
  function size(n) {
    if (n >= 10 * 1048576) return Math.floor(n / 1048576) + ' MiB';
    if (n >= 10 * 1024) return Math.floor(n / 1024) + ' KiB';
    return n + ' B';
  }

  function notice(text, ok) {
    const box = document.getElementById('notice');
    box.textContent = '';
    const p = document.createElement('p');
    p.className = 'notice ' + (ok ? 'ok' : 'bad');
    p.setAttribute('role', 'status');
    p.textContent = text;
    box.appendChild(p);
  }

  async function act(form) {
    const r = await fetch(form.action, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'X-CSRF-Token': csrf, 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(new FormData(form)).toString()
    });
    let msg = r.status + ' ' + r.statusText;
    try { msg = (await r.json()).message; } catch (e) { /* not JSON: keep the status */ }
    notice(msg, r.ok);
    refresh();
  }

  function actionForm(id, op, label) {
    const f = document.createElement('form');
    f.method = 'post';
    f.className = 'qa';
    f.action = '/api/queue/' + id + '/' + op;
    const h = document.createElement('input');
    h.type = 'hidden'; h.name = 'csrf'; h.value = csrf;
    const b = document.createElement('button');
    b.type = 'submit'; b.name = 'op'; b.value = op; b.textContent = label;
    f.appendChild(h); f.appendChild(b);
    return f;
  }

  function fill(tbodyId, rows, build) {
    const tb = document.querySelector('#' + tbodyId + ' tbody');
    tb.textContent = '';
    rows.forEach(function (x) { tb.appendChild(build(x)); });
  }

  async function refresh() {
    try {
      const [st, q, d] = await Promise.all(['/api/status', '/api/queue', '/api/deliveries?limit=100']
        .map(function (u) { return fetch(u, { credentials: 'same-origin' }).then(function (r) { return r.json(); }); }));
      fill('upstreams', st.upstreams, function (u) {
        const tr = document.createElement('tr');
        tr.dataset.upstream = u.name;
        td(tr, u.name); td(tr, u.kind); td(tr, u.state, 'state ' + u.state);
        td(tr, u.last_success || 'never'); td(tr, u.last_error); td(tr, u.hint); td(tr, u.token_expiry);
        return tr;
      });
      if (st.spool) {
        const m = document.getElementById('spool-messages');
        if (m) m.textContent = st.spool.messages + ' of ' + st.spool.max_messages;
        const b = document.getElementById('spool-bytes');
        if (b) b.textContent = size(st.spool.bytes) + ' of ' + size(st.spool.max_bytes);
        const o = document.getElementById('spool-oldest');
        if (o) o.textContent = st.spool.oldest_s + ' s';
      }
      fill('queue', q.messages, function (m) {
        const tr = document.createElement('tr');
        tr.dataset.id = m.id;
        td(tr, m.id); td(tr, m.created); td(tr, m.route); td(tr, m.from); td(tr, size(m.size));
        td(tr, m.attempts); td(tr, m.held ? 'held' : (m.delivering ? 'delivering' : m.next));
        td(tr, m.last);
        const a = td(tr, '', 'actions');
        a.appendChild(actionForm(m.id, 'retry', 'Retry'));
        a.appendChild(m.held ? actionForm(m.id, 'release', 'Release') : actionForm(m.id, 'hold', 'Hold'));
        a.appendChild(actionForm(m.id, 'delete', 'Delete'));
        return tr;
      });
      fill('deliveries', d, function (e) {
        const tr = document.createElement('tr');
        tr.className = e.result;
        td(tr, e.time); td(tr, e.result); td(tr, e.client); td(tr, e.listener); td(tr, e.route);
        td(tr, e.upstream); td(tr, e.from); td(tr, e.from_rewritten); td(tr, e.rcpts.join(', '));
        td(tr, size(e.size)); td(tr, e.duration_ms + ' ms'); td(tr, e.reply); td(tr, e.spool_id);
        return tr;
      });
      document.body.dataset.refreshed = String(Date.now());
    } catch (e) {
      notice('refresh failed: ' + e, false);
    }
  }

  document.addEventListener('submit', function (ev) {
    const f = ev.target;
    if (!f.classList.contains('qa')) return; // the test form posts as a page
    ev.preventDefault();
    act(f);
  });
  setInterval(refresh, 5000);
})();
