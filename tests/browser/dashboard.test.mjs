// SPDX-License-Identifier: MIT OR Apache-2.0
// Drives Debian's headless Chromium against a running agent (started by
// dashboard_browser_test.cpp with known traffic) and checks the dashboard at /.
//
//   node dashboard.test.mjs <url> <connection> <packets> <screenshot dir> [<control dir>]
//
// AYAFLOW_REFUSED_CONNECTION, when set, names a TCP connection the harness had refused (a
// SYN answered by RST): the page must show it as refused and highlight it.
//
// With a control dir it also checks the restart path: it creates <dir>/restart, expects
// "agent unreachable — retrying", creates <dir>/saw-down and expects the page to go live
// again once the harness has restarted the agent. Exit status 0 on success.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [url, connection, packetsArg, shotDir, controlDir] = process.argv.slice(2);
if (!url || !connection || !packetsArg || !shotDir) {
  console.error('usage: dashboard.test.mjs <url> <connection> <packets> <screenshot dir> [<control dir>]');
  process.exit(2);
}
const expectedPackets = Number(packetsArg);

function check(cond, message) {
  if (!cond) throw new Error(message);
  console.log('ok - ' + message);
}

const profile = mkdtempSync(join(tmpdir(), 'ayaflow-chromium-'));
// A fresh profile (--user-data-dir, which playwright passes for a persistent context).
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run', '--disable-sync'],
});
let failed = false;
try {
  const page = browser.pages()[0] || await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
  const external = [];
  page.on('request', (r) => { if (!r.url().startsWith(url.replace(/\/$/, '')) && !r.url().startsWith('data:')) external.push(r.url()); });

  const response = await page.goto(url, { waitUntil: 'load' });
  check(response.status() === 200, 'GET / answers 200');
  check(response.headers()['content-type'] === 'text/html; charset=utf-8', 'served as text/html; charset=utf-8');
  check((response.headers()['content-security-policy'] || '').includes("connect-src 'self' ws: wss:"), 'CSP header present');

  await page.waitForFunction(() => document.getElementById('status').textContent === 'live', null, { timeout: 10000 });
  check(true, 'status badge says live (WebSocket open)');

  // The generated connection, with its exact packet count, in the live table.
  const rowSel = `#live-body tr[data-connection="${connection}"]`;
  await page.waitForFunction(([sel, n]) => {
    const td = document.querySelector(sel + ' td.packets');
    return td && td.dataset.value === String(n);
  }, [rowSel, expectedPackets], { timeout: 15000 });
  const rowText = await page.locator(rowSel + ' td.packets').textContent();
  check(rowText === expectedPackets.toLocaleString('en-US'), `row ${connection} shows ${rowText} packets`);
  const sent = Number(await page.locator(rowSel + ' td.sent').getAttribute('data-value'));
  const received = Number(await page.locator(rowSel + ' td.received').getAttribute('data-value'));
  check(sent > 0 && received === 0, `sent/received split shown (${sent} / ${received} bytes)`);

  // TCP health columns of the real UDP row: no TCP state or RTT, no retransmissions (TCP
  // only), 0 drops; a healthy row is not highlighted.
  const udpHealth = await page.$eval(rowSel, (tr) => ({
    state: tr.querySelector('td.state').textContent, rtt: tr.querySelector('td.rtt').textContent,
    retransmits: tr.querySelector('td.retransmits').textContent, drops: tr.querySelector('td.drops').dataset.value,
    unhealthy: tr.classList.contains('unhealthy'), marker: tr.querySelector('.marker') !== null,
  }));
  check(udpHealth.state === '—' && udpHealth.rtt === '—' && udpHealth.retransmits === '—' && udpHealth.drops === '0' &&
    !udpHealth.unhealthy && !udpHealth.marker, `UDP row: no state, RTT or retransmissions, 0 drops, not highlighted (${JSON.stringify(udpHealth)})`);

  // A real refused connection (SYN answered by RST) is shown as refused and highlighted.
  const refused = process.env.AYAFLOW_REFUSED_CONNECTION;
  if (refused) {
    const refusedSel = `#live-body tr[data-connection="${refused}"]`;
    await page.waitForSelector(refusedSel + ' td.state[data-value="refused"]', { timeout: 15000 });
    const r = await page.$eval(refusedSel, (tr) => ({
      state: tr.querySelector('td.state').textContent, bad: tr.querySelector('td.state').classList.contains('bad'),
      flags: tr.querySelector('td.state').title, unhealthy: tr.classList.contains('unhealthy'),
      marker: tr.querySelector('td.conn .marker')?.title, color: getComputedStyle(tr.querySelector('td.drops')).backgroundColor,
      retransmits: tr.querySelector('td.retransmits').textContent,
      drops: tr.querySelector('td.drops').textContent, reason: tr.querySelector('td.drops').title,
    }));
    const plainColor = await page.$eval(rowSel + ' td.drops', (td) => getComputedStyle(td).backgroundColor);
    // The peer's kernel may also count the SYN it refused as a drop (NO_SOCKET): then the
    // marker names both.
    check(r.state === 'refused' && r.bad && r.unhealthy &&
      r.marker === 'unhealthy: refused' + (r.drops === '0' ? '' : ', ' + r.drops + ' dropped'),
      `refused connection ${refused} shown as refused and highlighted (${JSON.stringify(r)})`);
    check(r.color !== plainColor, `the highlighted row has its own background (${r.color} vs ${plainColor})`);
    check(/SYN/.test(r.flags) && /RST/.test(r.flags), `flags seen on hover (${r.flags})`);
  }

  // The filter box keeps only matching rows.
  await page.fill('#live-filter', connection);
  const filtered = await page.locator('#live-body tr[data-connection]').count();
  check(filtered === 1, 'filter box narrows the table to the connection');
  await page.fill('#live-filter', 'no-such-connection-xyz');
  check(await page.locator('#live-body tr[data-connection]').count() === 0, 'filter with no match empties the table');
  await page.fill('#live-filter', '');

  // Sorting by column: clicking Packets twice sorts ascending.
  await page.click('#live-table th[data-key="packets_count"]');
  const values = await page.$$eval('#live-body td.packets', (tds) => tds.map((t) => Number(t.dataset.value)));
  check(values.every((v, i) => i === 0 || values[i - 1] <= v), `sorted ascending by packets (${values.join(',')})`);

  // Live figures change as frames arrive (the harness keeps background traffic flowing).
  const before = await page.evaluate(() => ({
    frame: document.getElementById('last-frame').dataset.value,
    packets: document.getElementById('total-packets').dataset.value,
  }));
  await page.waitForFunction((b) => {
    const f = document.getElementById('last-frame').dataset.value;
    const p = document.getElementById('total-packets').dataset.value;
    return f !== b.frame && p !== b.packets;
  }, before, { timeout: 5000 });
  const after = await page.evaluate(() => document.getElementById('total-packets').dataset.value);
  check(Number(after) > Number(before.packets), `total packets rose from ${before.packets} to ${after}`);
  await page.waitForFunction(() => document.getElementById('rate-packets').dataset.value !== undefined, null, { timeout: 5000 });
  check(true, 'packets/s computed from consecutive frames');
  const lost = await page.locator('#events-lost').getAttribute('data-value');
  check(lost === '0', 'events lost read from /metrics (0)');

  // History (from the agent's SQLite store) with a filter.
  await page.fill('#history-form input[name="port"]', connection.split(' -> ')[1].split(':').pop());
  await page.selectOption('#history-form select[name="protocol"]', 'udp');
  // The store writes in batches: search again until the rows are there (10 s at most).
  const peerPort = connection.split(' -> ')[1].split(':').pop();
  let historyRows = 0;
  for (let i = 0; i < 20 && historyRows === 0; i++) {
    await page.click('#history-form button[type="submit"]');
    await page.waitForTimeout(500);
    historyRows = await page.$$eval('#history-body tr', (trs, p) => trs.filter((tr) =>
      tr.children.length === 14 && tr.querySelector('td.dst').textContent.endsWith(':' + p) &&
      tr.querySelector('td.proto').textContent === 'UDP' && tr.querySelector('td.iface').textContent !== '—').length, peerPort);
  }
  check(await page.locator('#history-error').textContent() === '', 'history query answered without error');
  check(historyRows > 0, `history filtered by port ${peerPort} and UDP shows ${historyRows} rows`);

  // Kubernetes names. The agent on this veth has no pods to name, so the API's answers are
  // extended here (the real live list plus two named connections; named history rows): the
  // page must show each end as namespace/pod (workload and kind on hover) or node/<name>,
  // and pass the history name filters on.
  const podToPod = {
    connection: '10.244.1.5:40000 -> 10.244.2.9:5432',
    stats: { bytes_sent: 1200, bytes_received: 3400, packets_count: 4321 },
    interface: 'veth-k8s', interfaces: ['veth-k8s'],
    local_namespace: 'shop', local_pod: 'web-7d9f8-x2x4q', local_workload: 'web', local_workload_kind: 'Deployment',
    remote_namespace: 'db', remote_pod: 'pg-0', remote_workload: 'pg', remote_workload_kind: 'StatefulSet',
  };
  const podToNode = {
    connection: '10.244.1.6:40001 -> 192.168.1.10:10250',
    stats: { bytes_sent: 10, bytes_received: 20, packets_count: 3 },
    local_namespace: 'tools', local_pod: 'debug', remote_node: 'node-a',
  };
  // TCP health: a connection with retransmissions and drops (its reason on hover) and a
  // healthy one; RTT with its kind.
  const lossy = {
    connection: '10.0.9.1:41000 -> 10.0.9.2:443',
    stats: { bytes_sent: 90000, bytes_received: 1000, packets_count: 120, state: 'established',
      tcp_flags_sent: 'SYN|ACK', tcp_flags_received: 'ACK|SYN-ACK', rtt_us: 20400, rtt_kind: 'smoothed',
      handshake_rtt_us: 20900, srtt_us: 20400, retransmits: 3, drops: 2, drop_reason: 'NETFILTER_DROP' },
  };
  const healthy = {
    connection: '10.0.9.1:41001 -> 10.0.9.2:443',
    stats: { bytes_sent: 500, bytes_received: 700, packets_count: 9, state: 'closed',
      tcp_flags_sent: 'SYN|ACK|FIN', tcp_flags_received: 'ACK|SYN-ACK|FIN', rtt_us: 850, rtt_kind: 'handshake',
      handshake_rtt_us: 850, retransmits: 0, drops: 0 },
  };
  const liveRoute = /\/api\/live$/;
  await page.route(liveRoute, async (route) => {
    const real = await (await route.fetch()).json();
    real.connections.push(podToPod, podToNode, lossy, healthy);
    await route.fulfill({ json: real });
  });
  const namedSel = `#live-body tr[data-connection="${podToPod.connection}"]`;
  await page.waitForSelector(namedSel + ' .k8s', { timeout: 10000 });
  const liveNames = await page.locator(namedSel + ' .k8s').textContent();
  check(liveNames === 'shop/web-7d9f8-x2x4q → db/pg-0', `live row names both pods (${liveNames})`);
  const liveTitles = await page.$$eval(namedSel + ' .k8s .end', (els) => els.map((e) => e.title));
  check(liveTitles.join('|') === 'workload web (Deployment)|workload pg (StatefulSet)', `workload and kind on hover (${liveTitles.join('|')})`);
  const nodeNames = await page.locator(`#live-body tr[data-connection="${podToNode.connection}"] .k8s`).textContent();
  check(nodeNames === 'tools/debug → node/node-a', `a pod-to-node row names the node (${nodeNames})`);
  const plainNames = await page.locator(rowSel + ' .k8s').count();
  check(plainNames === 0, 'a connection without names has no name line');
  await page.fill('#live-filter', 'pg-0');
  const byPod = await page.$$eval('#live-body tr[data-connection]', (trs) => trs.map((tr) => tr.dataset.connection));
  check(byPod.length === 1 && byPod[0] === podToPod.connection, 'the filter box matches pod names');
  await page.fill('#live-filter', 'StatefulSet');
  check(await page.locator('#live-body tr[data-connection]').count() === 1, 'the filter box matches workload kinds');
  await page.fill('#live-filter', '');

  const healthOf = (sel) => page.$eval(sel, (tr) => {
    const td = (c) => tr.querySelector('td.' + c);
    return { state: td('state').textContent, rtt: td('rtt').firstChild.textContent, kind: td('rtt').dataset.kind,
      retransmits: td('retransmits').textContent, drops: td('drops').textContent, reason: td('drops').title,
      badCells: [...tr.querySelectorAll('td.bad')].map((t) => t.className.split(' ')[1]).join(','),
      unhealthy: tr.classList.contains('unhealthy'), marker: tr.querySelector('.marker')?.title || '' };
  });
  const lossyHealth = await healthOf(`#live-body tr[data-connection="${lossy.connection}"]`);
  check(JSON.stringify(lossyHealth) === JSON.stringify({ state: 'established', rtt: '20.4 ms', kind: 'smoothed',
    retransmits: '3', drops: '2', reason: 'kernel drop reason: NETFILTER_DROP', badCells: 'retransmits,drops',
    unhealthy: true, marker: 'unhealthy: 3 retransmitted, 2 dropped' }),
  `retransmissions and drops highlighted, RTT with its kind, drop reason on hover (${JSON.stringify(lossyHealth)})`);
  const healthyHealth = await healthOf(`#live-body tr[data-connection="${healthy.connection}"]`);
  check(JSON.stringify(healthyHealth) === JSON.stringify({ state: 'closed', rtt: '850 µs', kind: 'handshake',
    retransmits: '0', drops: '0', reason: '', badCells: '', unhealthy: false, marker: '' }),
  `a closed connection without loss is not highlighted (${JSON.stringify(healthyHealth)})`);
  await page.fill('#live-filter', 'NETFILTER_DROP');
  const byReason = await page.$$eval('#live-body tr[data-connection]', (trs) => trs.map((tr) => tr.dataset.connection));
  check(byReason.length === 1 && byReason[0] === lossy.connection, 'the filter box matches drop reasons');
  await page.fill('#live-filter', '');
  await page.click('#live-table th[data-key="drops"]');
  const byDrops = await page.$$eval('#live-body tr[data-connection]', (trs) => trs.map((tr) => tr.dataset.connection));
  check(byDrops[0] === lossy.connection, 'sorting by drops puts the lossy connection first');

  let historyUrl = null;
  const historyRoute = /\/api\/history\?/;
  await page.route(historyRoute, async (route) => {
    historyUrl = new URL(route.request().url());
    await route.fulfill({ json: [
      { id: 2, timestamp: Date.now(), src_ip: '10.244.1.5', dst_ip: '10.244.2.9', src_port: 40000, dst_port: 5432,
        protocol: 'TCP', length: 1500, packet_count: 3, direction: 'egress', interface: 'veth-k8s',
        tcp_flags: 0x1 | 0x2 | 0x4 | 0x10, state: 'reset', rtt_us: 1500, rtt_kind: 'handshake', retransmits: 0, drops: 1,
        src_namespace: 'shop', src_pod: 'web-7d9f8-x2x4q', src_workload: 'web', src_workload_kind: 'Deployment',
        dst_namespace: 'db', dst_pod: 'pg-0', dst_workload: 'pg', dst_workload_kind: 'StatefulSet' },
      { id: 1, timestamp: Date.now() - 1000, src_ip: '10.244.1.6', dst_ip: '192.168.1.10', src_port: 40001, dst_port: 10250,
        protocol: 'TCP', length: 60, packet_count: 1, direction: 'egress',
        src_namespace: 'tools', src_pod: 'debug', dst_node: 'node-a' },
    ] });
  });
  await page.fill('#history-form input[name="port"]', '');
  await page.selectOption('#history-form select[name="protocol"]', '');
  await page.fill('#history-form input[name="namespace"]', 'shop');
  await page.fill('#history-form input[name="workload"]', 'web');
  await page.selectOption('#history-form select[name="state"]', 'reset');
  await page.click('#history-form button[type="submit"]');
  await page.waitForFunction(() => document.querySelectorAll('#history-body td.src .k8s').length === 2, null, { timeout: 10000 });
  const params = historyUrl ? historyUrl.searchParams : new URLSearchParams();
  check(params.get('namespace') === 'shop' && params.get('workload') === 'web' && params.get('state') === 'reset' &&
    !params.has('pod'), `history filters sent as namespace=shop&workload=web&state=reset (${historyUrl && historyUrl.search})`);
  const historyHealth = await page.$$eval('#history-body tr', (trs) => trs.map((tr) => {
    const td = (c) => tr.querySelector('td.' + c);
    return [td('state').textContent, td('rtt').firstChild.textContent, td('rtt').dataset.kind || '', td('retransmits').textContent,
      td('drops').textContent, td('flags').textContent, tr.classList.contains('unhealthy') ? 'unhealthy' : 'ok'].join(' / ');
  }));
  check(historyHealth[0] === 'reset / 1.50 ms / handshake / 0 / 1 / FIN|SYN|RST|ACK / unhealthy',
    `history row with health columns, highlighted (${historyHealth[0]})`);
  check(historyHealth[1] === '— / — /  / — / — / — / ok', `history row without health figures (${historyHealth[1]})`);
  const historyNames = await page.$$eval('#history-body tr', (trs) => trs.map((tr) =>
    [...tr.querySelectorAll('.k8s .end')].map((e) => e.textContent + (e.title ? ' [' + e.title + ']' : '')).join(' | ')));
  check(historyNames[0] === 'shop/web-7d9f8-x2x4q [workload web (Deployment)] | db/pg-0 [workload pg (StatefulSet)]',
    `history row names source and destination pods (${historyNames[0]})`);
  check(historyNames[1] === 'tools/debug | node/node-a [the node itself]', `history row names a pod and the node (${historyNames[1]})`);
  const srcText = await page.$eval('#history-body tr td.src', (td) => td.firstChild.textContent);
  check(srcText === '10.244.1.5:40000', 'the address stays the cell\'s first line');
  check(await page.locator('#history-error').textContent() === '', 'named history answered without error');

  await page.screenshot({ path: join(shotDir, 'dashboard-laptop.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `no horizontal scrolling on a phone-sized viewport (overflow ${overflow}px)`);
  await page.screenshot({ path: join(shotDir, 'dashboard-phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.unroute(liveRoute);
  await page.unroute(historyRoute);

  check(problems.length === 0, 'no page errors or CSP violations' + (problems.length ? ': ' + problems.join('; ') : ''));
  if (controlDir) {
    writeFileSync(join(controlDir, 'restart'), '');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'agent unreachable — retrying', null, { timeout: 15000 });
    check(true, 'agent stopped: page says "agent unreachable — retrying"');
    await page.screenshot({ path: join(shotDir, 'dashboard-unreachable.png') });
    writeFileSync(join(controlDir, 'saw-down'), '');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'live', null, { timeout: 40000 });
    const mark = await page.evaluate(() => document.getElementById('last-frame').dataset.value);
    await page.waitForFunction((m) => document.getElementById('last-frame').dataset.value !== m, mark, { timeout: 5000 });
    check(true, 'agent restarted: the WebSocket reconnected and frames flow again');
  }

  // While the agent was down, refused connections are logged; nothing else may be.
  const late = problems.filter((p) => !/ERR_CONNECTION_REFUSED|WebSocket connection|Failed to load resource/.test(p));
  check(late.length === 0, 'no page errors or CSP violations after the restart' + (late.length ? ': ' + late.join('; ') : ''));
  check(external.length === 0, 'no request left the agent' + (external.length ? ': ' + external.join(', ') : ''));
} catch (e) {
  failed = true;
  console.error('not ok - ' + e.message);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
