// admin_page.mjs - the admin page in a real browser: Debian's chromium,
// headless, driven by puppeteer-core (never a downloaded browser). run.sh
// starts the proxy with one message delivered and one in the spool, the
// upstream back up, then runs this with:
//   ADMIN_URL, ADMIN_USER, ADMIN_PASS, SPOOL_ID, RECORD (the upstream's
//   JSON lines), SHOT_DIR (screenshots), CHROMIUM (default /usr/bin/chromium)
// It logs in (HTTP Basic), reads the upstream table, checks the page's
// headers and that no inline script exists, clicks "Retry" on the spooled
// message and waits until the queue row is gone, the upstream got the
// message and the table reads the upstream up, sends a test message with
// the route's form, and reads the page again without JavaScript. Exit 0
// only if all held.
import { readFileSync, existsSync } from 'node:fs';
import puppeteer from 'puppeteer-core';

const env = (k, d) => process.env[k] ?? d;
const url = env('ADMIN_URL');
const id = env('SPOOL_ID');
const shots = env('SHOT_DIR', '.');
const fail = (msg) => { console.error('FAIL: ' + msg); process.exitCode = 1; throw new Error(msg); };
const ok = (cond, msg) => { if (!cond) fail(msg); console.log('ok   ' + msg); };

const browser = await puppeteer.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-dev-shm-usage',
         '--proxy-server=direct://', '--proxy-bypass-list=*'],
});
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 1000 });
  const cspViolations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text()); });
  page.on('pageerror', (e) => fail('script error on the page: ' + e.message));

  // without credentials: 401 with a Basic challenge (asked outside the
  // browser, which would only report a cancelled login)
  const anon = await fetch(url);
  ok(anon.status === 401 && /^Basic /.test(anon.headers.get('www-authenticate') || ''),
     'without credentials the page answers 401 with a Basic challenge');

  await page.authenticate({ username: env('ADMIN_USER'), password: env('ADMIN_PASS') });
  const resp = await page.goto(url, { waitUntil: 'networkidle0' });
  ok(resp.status() === 200, 'logged in with HTTP Basic');
  const h = resp.headers();
  ok(/script-src 'self'/.test(h['content-security-policy'] || '') &&
     /frame-ancestors 'none'/.test(h['content-security-policy'] || ''), 'strict CSP header');
  ok(h['x-content-type-options'] === 'nosniff', 'nosniff');
  ok((await page.$$eval('script:not([src])', (s) => s.length)) === 0, 'no inline script');

  // the upstream table
  const ups = await page.$$eval('#upstreams tbody tr', (rows) =>
    rows.map((r) => Array.from(r.cells).map((c) => c.textContent.trim())));
  console.log('upstreams:', JSON.stringify(ups));
  ok(ups.length === 1 && ups[0][0] === 'up' && ups[0][1] === 'smtp', 'the upstream table lists "up" (smtp)');
  ok(ups[0][2] === 'down' && ups[0][4] !== '', 'it reads down, with the last error');

  // the queue row of the spooled message, and the delivery table
  const row = `#queue tbody tr[data-id="${id}"]`;
  ok(await page.$(row) !== null, 'the spooled message is in the queue table');
  const results = await page.$$eval('#deliveries tbody tr', (rows) => rows.map((r) => r.cells[1].textContent));
  ok(results.includes('spooled') && results.includes('delivered'), 'the delivery table shows delivered and spooled');
  await page.screenshot({ path: `${shots}/admin-page.png`, fullPage: true });
  console.log(`screenshot: ${shots}/admin-page.png`);

  // Retry: the script posts it with the CSRF token and refreshes the tables
  await page.click(`${row} button[value="retry"]`);
  await page.waitForFunction((sel) => document.querySelector(sel) === null, { timeout: 20000, polling: 250 }, row)
    .catch(() => fail('the message did not leave the queue after Retry'));
  ok(true, 'after Retry the message left the queue');
  const notice = await page.$eval('#notice', (n) => n.textContent);
  ok(/scheduled now/.test(notice), `the page says so: "${notice.trim()}"`);
  const rec = env('RECORD');
  let got = false;
  for (let i = 0; i < 40 && !got; i++) {
    got = existsSync(rec) && readFileSync(rec, 'utf8').split('\n').filter((l) => /"event":\s*"message"/.test(l)).length >= 2;
    if (!got) await new Promise((r) => setTimeout(r, 250));
  }
  ok(got, 'the upstream received the spooled message');
  // the next refresh shows the upstream up again
  await page.waitForFunction(() => {
    const c = document.querySelector('#upstreams tbody tr td:nth-child(3)');
    return c && c.textContent === 'up';
  }, { timeout: 15000, polling: 500 }).catch(() => fail('the upstream did not turn up on the page'));
  ok(true, 'the upstream table reads up after the delivery');
  const figs = await page.$eval('#spool-bytes', (d) => d.textContent);
  ok(figs === '0 B of 2048 MiB', `the refreshed spool figures read as the server's: "${figs}"`);
  await page.screenshot({ path: `${shots}/admin-page-after-retry.png`, fullPage: true });
  console.log(`screenshot: ${shots}/admin-page-after-retry.png`);

  // the "send a test message" form: a plain form POST, answered with the
  // page, the outcome and the dialogue (AUTH would be redacted)
  await page.type('form.test input[name="from"]', 'admin-test@printers.lan');
  await page.type('form.test input[name="to"]', 'office@example.com');
  await Promise.all([page.waitForNavigation({ timeout: 60000 }),
                     page.click('form.test button[type="submit"]')]);
  const said = await page.evaluate(() => document.body.innerText);
  ok(/route default: the upstream accepted it/.test(said), 'the test form reports the upstream accepted it');
  ok(/== OK: the upstream accepted the message/.test(said), 'and shows the dialogue');

  // without JavaScript: the server-rendered page still has the tables and forms
  const nojs = await browser.newPage();
  await nojs.setJavaScriptEnabled(false);
  await nojs.authenticate({ username: env('ADMIN_USER'), password: env('ADMIN_PASS') });
  await nojs.goto(url);
  ok((await nojs.$$('#upstreams tbody tr')).length === 1, 'without JavaScript the tables are there');
  ok((await nojs.$$('form.test input[name="csrf"]')).length >= 1, 'and the test form posts a CSRF token');
  ok(cspViolations.length === 0, 'no CSP violation reported: ' + cspViolations.join('; '));
} finally {
  await browser.close();
}
