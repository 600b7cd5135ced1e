// scripts/cluster.sh as an operator runs it: two nodes on the local Redis and PostgreSQL and a
// Prometheus (Debian's) scraping them. Asserts that Prometheus reports every node's target as up
// (through its HTTP API), that it accepts every query of the Grafana dashboard, that chat lives
// in the run's own schema, and that SIGTERM stops every process the script started and removes
// the run's Redis keys and schema. The script runs in its own process group, so whatever happens
// the test can stop exactly what it started.

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, createConnection } from 'node:net';
import { createSocket } from 'node:dgram';
import { CHORUS_BIN } from '../lib/server.mjs';
import { REPO_ROOT, dashboardQueries, requireTools, run } from '../lib/deploy.mjs';

const NODES = 2;
const REDIS_URL = process.env.CHORUS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const POSTGRES_URL = process.env.CHORUS_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const STOP_TIMEOUT_S = 15;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Resolves to 'timeout' after `ms` without keeping the process alive. */
const timesOut = (ms) => new Promise((r) => setTimeout(() => r('timeout'), ms).unref());

const tcpFree = (port) =>
  new Promise((ok) => {
    const srv = createServer();
    srv.once('error', () => ok(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => ok(true)));
  });
const udpFree = (port) =>
  new Promise((ok) => {
    const sock = createSocket('udp4');
    sock.once('error', () => ok(false));
    sock.bind(port, '127.0.0.1', () => sock.close(() => ok(true)));
  });

/** A BASE_PORT whose ports (per node: HTTP, TURN at +1, SFU at +2 and its second worker's UDP at +3; Prometheus at +9) are all free now. */
async function freeBasePort() {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + 10 * Math.floor(Math.random() * 1000);
    const checks = [tcpFree(base + 9)];
    for (let i = 0; i < NODES; i++) {
      const b = base + 10 * i;
      checks.push(tcpFree(b), tcpFree(b + 1), udpFree(b + 1), tcpFree(b + 2), udpFree(b + 2), udpFree(b + 3));
    }
    if ((await Promise.all(checks)).every(Boolean)) return base;
  }
  throw new Error('no free block of ports found');
}

const refused = (port) =>
  new Promise((ok) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    sock.once('connect', () => {
      sock.destroy();
      ok(false);
    });
    sock.once('error', () => ok(true));
  });

/** Pids of live processes in process group `pgid`. */
async function groupMembers(pgid) {
  const r = await run('ps', ['-eo', 'pid=,pgid=,stat=']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([pid, group, stat]) => pid && Number(group) === pgid && !stat.startsWith('Z'))
    .map(([pid]) => Number(pid));
}

const redis = (...args) => run('redis-cli', ['-u', REDIS_URL, ...args]);
const psql = (sql) => run('psql', [POSTGRES_URL, '-Atqc', sql]);
const schemaExists = async (schema) =>
  (await psql(`select count(*) from information_schema.schemata where schema_name = '${schema}'`)).stdout.trim() === '1';

async function eventually(what, fn, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last.ok) return last;
    } catch (e) {
      last = { error: String(e) };
    }
    if (Date.now() > deadline) assert.fail(`${what} within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await sleep(250);
  }
}

it('scripts/cluster.sh starts nodes Prometheus sees up, and SIGTERM stops all it started', { timeout: 240_000 }, async (t) => {
  if (!requireTools(t, ['prometheus', 'redis-cli', 'psql', 'curl', 'ps'], 'apt-get install prometheus redis-tools postgresql-client curl procps')) {
    return;
  }
  const base = await freeBasePort();
  const promPort = base + 9;
  const script = spawn('bash', ['scripts/cluster.sh'], {
    cwd: REPO_ROOT,
    // Its own process group (and session): the script and everything it starts share it.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      CHORUS_BIN,
      NODES: String(NODES),
      BASE_PORT: String(base),
      RELAY_PORT_BASE: String(40000 + 100 * Math.floor(Math.random() * 80)),
      REDIS_URL,
      POSTGRES_URL,
      SCRAPE_INTERVAL: '1s',
      READY_TIMEOUT: '90',
      STOP_TIMEOUT: String(STOP_TIMEOUT_S),
      LOG_LEVEL: 'warn',
    },
  });
  const pgid = script.pid;
  let output = '';
  script.stdout.on('data', (c) => (output += c));
  script.stderr.on('data', (c) => (output += c));
  let exit = null;
  const exited = new Promise((ok) => script.on('exit', (code, signal) => ok((exit = { code, signal }))));
  let prefix = null;
  let schema = null;

  try {
    await eventually(
      'the script says the cluster is ready',
      async () => {
        if (exit) assert.fail(`cluster.sh exited early (${JSON.stringify(exit)}):\n${output}`);
        return { ok: /^cluster ready/m.test(output) };
      },
      150_000,
    );
    [, prefix, schema] = output.match(/prefix (\S+), chat schema (\S+)/);
    const pids = [...output.matchAll(/\bpid (\d+)/g)].map((m) => Number(m[1]));
    assert.equal(pids.length, NODES + 1, `a pid per node and Prometheus:\n${output}`);

    const nodeUrls = Array.from({ length: NODES }, (_, i) => `127.0.0.1:${base + 10 * i}`);
    for (const addr of nodeUrls) {
      const res = await fetch(`http://${addr}/ready`);
      assert.equal(res.status, 200, `${addr}/ready`);
    }

    // Prometheus reports one target per node, each up.
    const targets = await eventually(
      'Prometheus reports every node up',
      async () => {
        const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/targets`);
        const body = await res.json();
        const active = body.data.activeTargets.filter((tg) => tg.labels.job === 'chorus');
        return { ok: active.length === NODES && active.every((tg) => tg.health === 'up'), active };
      },
      30_000,
    );
    assert.deepEqual(
      targets.active.map((tg) => [tg.labels.instance, tg.labels.node]).sort(),
      nodeUrls.map((addr, i) => [addr, `node-${i + 1}`]),
    );
    const up = await (await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent('up{job="chorus"}')}`)).json();
    assert.deepEqual(
      up.data.result.map((s) => s.value[1]),
      Array(NODES).fill('1'),
      'the scrapes succeeded, not only the target list',
    );

    // Every dashboard query is valid PromQL for this Prometheus.
    for (const { panel, expr } of dashboardQueries()) {
      const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = await res.json();
      assert.equal(body.status, 'success', `panel "${panel}": ${expr}: ${body.error}`);
    }

    // Chat lives in the run's schema (the nodes ran their migrations there).
    const tables = await psql(`select count(*) from information_schema.tables where table_schema = '${schema}'`);
    assert.ok(Number(tables.stdout) > 0, `chat tables in schema ${schema}: ${tables.stdout}${tables.stderr}`);
    // A key under the run's prefix, as the nodes write: the script must remove it at exit.
    assert.equal((await redis('set', `${prefix}test-marker`, '1')).stdout.trim(), 'OK');

    process.kill(script.pid, 'SIGTERM');
    const stopped = await Promise.race([exited, timesOut((STOP_TIMEOUT_S + 15) * 1000)]);
    assert.notEqual(stopped, 'timeout', `cluster.sh did not stop:\n${output}`);
    assert.equal(exit.code, 143, `exit status after SIGTERM:\n${output}`);
    assert.match(output, /^cluster stopped$/m);

    assert.deepEqual(await groupMembers(pgid), [], 'no process of the script is left');
    for (const pid of pids) {
      assert.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `pid ${pid} is gone`);
    }
    for (let i = 0; i < NODES; i++) assert.ok(await refused(base + 10 * i), `node ${i + 1}'s port is closed`);
    assert.ok(await refused(promPort), "Prometheus's port is closed");
    assert.equal((await redis('exists', `${prefix}test-marker`)).stdout.trim(), '0', 'run keys deleted');
    assert.equal(await schemaExists(schema), false, `schema ${schema} dropped`);
  } finally {
    // After a failure: stop the group (SIGTERM lets the script clean up), then make sure.
    if (!exit) {
      try {
        process.kill(-pgid, 'SIGTERM');
      } catch {}
      await Promise.race([exited, timesOut((STOP_TIMEOUT_S + 5) * 1000)]);
    }
    if ((await groupMembers(pgid)).length > 0) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {}
    }
    if (prefix?.startsWith('chorus-cluster-')) await redis('del', `${prefix}test-marker`);
    if (schema?.startsWith('chorus_cluster_') && (await schemaExists(schema))) {
      await psql(`drop schema ${schema} cascade`);
    }
  }
});
