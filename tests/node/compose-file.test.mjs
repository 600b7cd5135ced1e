// The deployment files, checked without a Docker daemon: docker-compose.yml through Debian's
// `docker-compose config` (interpolation, anchors, schema), every node's environment through
// `chorus check-config` (each CHORUS_* variable is a real key with a valid value), the port layout
// media needs, the Prometheus and HAProxy configs naming every node, `promtool check config`, and
// the Grafana dashboard reading only metrics Chorus registers (or the cluster metrics ADR 0060
// names, until they are registered).

import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHORUS_BIN } from '../lib/server.mjs';
import {
  DASHBOARD,
  REPO_ROOT,
  dashboardPanels,
  metricNames,
  parseYaml,
  requireTools,
  run,
} from '../lib/deploy.mjs';

const COMPOSE_HINT = 'apt-get install docker-compose';
const PUBLIC_IP = '203.0.113.7';

/** deploy/compose.env.example with every empty value filled in, as an operator would. */
async function filledEnvFile(dir) {
  const example = await readFile(join(REPO_ROOT, 'deploy/compose.env.example'), 'utf8');
  const filled = example
    .split('\n')
    .map((line) => {
      if (line.startsWith('CHORUS_PUBLIC_IP=')) return `CHORUS_PUBLIC_IP=${PUBLIC_IP}`;
      return /^[A-Z_]+=$/.test(line) ? `${line}${'s'.repeat(40)}` : line;
    })
    .join('\n');
  const path = join(dir, 'compose.env');
  await writeFile(path, filled);
  return path;
}

/** `docker-compose config` with only PATH from this process, so a developer's shell cannot help. */
function composeConfig(envFile) {
  return run('docker-compose', ['--env-file', envFile, '--file', 'docker-compose.yml', 'config'], {
    env: { PATH: process.env.PATH },
  });
}

async function withTempDir(fn) {
  const dir = await mkdtemp(join(tmpdir(), 'chorus-compose-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const isNode = (service) => Boolean(service.environment?.CHORUS_CLUSTER_NODE_ID);
const portOf = (listen) => Number(listen.split(':').pop());
const published = (service, port, protocol) =>
  (service.ports ?? []).some(
    (p) => Number(p.target) === port && Number(p.published) === port && (p.protocol ?? 'tcp') === protocol,
  );

it('docker-compose config accepts the stack: two nodes, balancer, Redis, PostgreSQL, Prometheus, Grafana', async (t) => {
  if (!requireTools(t, ['docker-compose', 'python3'], COMPOSE_HINT)) return;
  await withTempDir(async (dir) => {
    const r = await composeConfig(await filledEnvFile(dir));
    assert.equal(r.code, 0, `docker-compose config failed:\n${r.stderr}`);
    const { services } = await parseYaml(r.stdout);
    for (const name of ['lb', 'redis', 'postgres', 'prometheus', 'grafana']) {
      assert.ok(services[name], `service ${name} in ${Object.keys(services)}`);
    }
    const nodes = Object.entries(services).filter(([, s]) => isNode(s));
    assert.equal(nodes.length, 2, 'two Chorus nodes');

    const envs = nodes.map(([, s]) => s.environment);
    assert.equal(new Set(envs.map((e) => e.CHORUS_CLUSTER_NODE_ID)).size, 2, 'distinct node ids');
    for (const key of ['CHORUS_CLUSTER_REDIS_URL', 'CHORUS_CLUSTER_KEY_PREFIX', 'CHORUS_CHAT_DATABASE_URL', 'CHORUS_AUTH_SECRET']) {
      assert.equal(new Set(envs.map((e) => e[key])).size, 1, `${key} is shared by the nodes`);
    }
    assert.match(envs[0].CHORUS_CLUSTER_REDIS_URL, /^redis:\/\/redis:6379/);
    assert.match(envs[0].CHORUS_CHAT_DATABASE_URL, /^postgres:\/\/chorus:s+@postgres:5432\/chorus$/);

    const hostPorts = [];
    for (const [name, s] of nodes) {
      const e = s.environment;
      assert.equal(e.CHORUS_SFU_PUBLIC_IPS, PUBLIC_IP, `${name}: SFU candidates carry the public address`);
      assert.equal(e.CHORUS_TURN_EXTERNAL_IP, PUBLIC_IP, `${name}: TURN relayed addresses too`);
      // Candidates carry the port the node listens on, so it must be published unchanged.
      const sfu = portOf(e.CHORUS_SFU_UDP_LISTEN);
      assert.equal(portOf(e.CHORUS_SFU_TCP_LISTEN), sfu, `${name}: ICE-TCP on the SFU's port`);
      const turn = portOf(e.CHORUS_TURN_UDP_LISTEN);
      for (const [port, proto] of [[sfu, 'udp'], [sfu, 'tcp'], [turn, 'udp'], [turn, 'tcp']]) {
        assert.ok(published(s, port, proto), `${name}: ${port}/${proto} published as ${port}`);
      }
      // SFU worker i listens on the first port plus i, and its peers use that port.
      const workers = Number(e.CHORUS_SFU_WORKERS);
      assert.ok(workers >= 1, `${name}: a fixed SFU worker count, so the published range is known`);
      for (let port = sfu; port < sfu + workers; port++) {
        assert.ok(published(s, port, 'udp'), `${name}: SFU worker port ${port}/udp published`);
      }
      const [min, max] = [Number(e.CHORUS_TURN_RELAY_PORT_MIN), Number(e.CHORUS_TURN_RELAY_PORT_MAX)];
      for (let port = min; port <= max; port++) {
        assert.ok(published(s, port, 'udp'), `${name}: TURN relay port ${port}/udp published`);
      }
      assert.ok(
        e.CHORUS_ICE_TURN_URLS.split(',').every((u) => u.startsWith(`turn:${PUBLIC_IP}:${turn}?`)),
        `${name}: clients get this node's TURN: ${e.CHORUS_ICE_TURN_URLS}`,
      );
      assert.ok(!published(s, 8080, 'tcp'), `${name}: HTTP only through the balancer`);
      hostPorts.push(...s.ports.map((p) => `${p.published}/${p.protocol ?? 'tcp'}`));
    }
    assert.equal(new Set(hostPorts).size, hostPorts.length, `no host port twice: ${hostPorts}`);
    assert.ok(published(services.lb, 8080, 'tcp'), 'the balancer is the public HTTP entry');
    // docker-compose 1.x keeps the short form for a port bound to one address; 2.x expands it.
    const hostIp = (p) => (typeof p === 'string' ? p.split(':')[0] : p.host_ip);
    for (const name of ['prometheus', 'grafana']) {
      assert.ok(
        services[name].ports.every((p) => hostIp(p) === '127.0.0.1'),
        `${name} is published on this host only: ${JSON.stringify(services[name].ports)}`,
      );
    }
  });
});

it('every node environment in the compose file is a valid Chorus configuration', async (t) => {
  if (!requireTools(t, ['docker-compose', 'python3'], COMPOSE_HINT)) return;
  await withTempDir(async (dir) => {
    const r = await composeConfig(await filledEnvFile(dir));
    assert.equal(r.code, 0, r.stderr);
    const nodes = Object.entries((await parseYaml(r.stdout)).services).filter(([, s]) => isNode(s));
    for (const [name, s] of nodes) {
      const env = { PATH: process.env.PATH, ...s.environment };
      const ok = await run(CHORUS_BIN, ['check-config', '--config', 'deploy/chorus/chorus.toml'], { env });
      assert.equal(ok.code, 0, `${name}: chorus check-config refused it:\n${ok.stderr}`);
      // The check is real: a misspelt key in the same environment is refused by name.
      const bad = await run(CHORUS_BIN, ['check-config', '--config', 'deploy/chorus/chorus.toml'], {
        env: { ...env, CHORUS_CLUSTER_NODE_IDD: 'x' },
      });
      assert.equal(bad.code, 2, `${name}: a misspelt key must be refused`);
      assert.match(bad.stderr, /cluster\.node_idd/);
    }
  });
});

it('docker-compose config refuses to run without the secrets, naming the missing variable', async (t) => {
  if (!requireTools(t, ['docker-compose'], COMPOSE_HINT)) return;
  await withTempDir(async (dir) => {
    const empty = join(dir, 'empty.env');
    await writeFile(empty, '');
    const r = await composeConfig(empty);
    assert.notEqual(r.code, 0, 'no default secrets');
    assert.match(r.stderr, /set (CHORUS_AUTH_SECRET|CHORUS_ICE_TURN_SECRET|POSTGRES_PASSWORD|GRAFANA_ADMIN_PASSWORD)/);
  });
});

it('Prometheus and HAProxy name every node of the compose file; /metrics stays off the balancer', async (t) => {
  if (!requireTools(t, ['docker-compose', 'python3', 'promtool'], `${COMPOSE_HINT} prometheus`)) return;
  const promFile = 'deploy/prometheus/prometheus.yml';
  const check = await run('promtool', ['check', 'config', promFile]);
  assert.equal(check.code, 0, `promtool check config:\n${check.stdout}${check.stderr}`);

  const nodeNames = await withTempDir(async (dir) => {
    const r = await composeConfig(await filledEnvFile(dir));
    assert.equal(r.code, 0, r.stderr);
    return Object.entries((await parseYaml(r.stdout)).services)
      .filter(([, s]) => isNode(s))
      .map(([name]) => name)
      .sort();
  });
  const prom = await parseYaml(await readFile(join(REPO_ROOT, promFile), 'utf8'));
  const job = prom.scrape_configs.find((j) => j.job_name === 'chorus');
  const scraped = job.static_configs.map((c) => ({ target: c.targets.join(), node: c.labels.node })).sort((a, b) => a.node.localeCompare(b.node));
  assert.deepEqual(
    scraped,
    nodeNames.map((n) => ({ target: `${n}:8080`, node: n })),
    'one target per node, labelled with its node id',
  );

  const haproxy = await readFile(join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg'), 'utf8');
  const backends = haproxy.split(/^backend /m).slice(1);
  assert.ok(backends.length >= 1);
  for (const backend of backends) {
    const servers = [...backend.matchAll(/^\s+server (\S+) (\S+)/gm)].map((m) => `${m[1]} ${m[2]}`).sort();
    assert.deepEqual(servers, nodeNames.map((n) => `${n} ${n}:8080`), `backend ${backend.split('\n')[0]}`);
  }
  assert.match(haproxy, /http-request deny deny_status 404 if \{ path \/metrics \}/);
});

it('the Grafana dashboard reads the provisioned Prometheus and only metrics Chorus exports', async () => {
  const datasource = await readFile(join(REPO_ROOT, 'deploy/grafana/provisioning/datasources/prometheus.yml'), 'utf8');
  const uid = datasource.match(/^\s+uid: (\S+)$/m)[1];
  const panels = dashboardPanels();
  assert.ok(panels.length > 10, DASHBOARD);

  // Names registered in code: a "chorus_..." string literal in a crate's src/.
  const registered = new Set();
  for (const crate of ['src', 'signaling/src', 'sfu/src', 'turn/src', 'chat/src', 'config/src', 'protocol/src']) {
    for (const file of await readdir(join(REPO_ROOT, crate), { recursive: true })) {
      if (!file.endsWith('.rs')) continue;
      const text = await readFile(join(REPO_ROOT, crate, file), 'utf8');
      for (const m of text.matchAll(/"(chorus_[a-z0-9_]+)"/g)) registered.add(m[1]);
    }
  }
  // The cluster metrics ADR 0060 names (registered once cluster mode lands).
  const adr = await readFile(join(REPO_ROOT, 'docs/adr/0060-cluster-owner-nodes-over-redis.md'), 'utf8');
  const planned = new Set([...adr.matchAll(/`(chorus_cluster_[a-z_]+)/g)].map((m) => m[1]));
  assert.ok(planned.size >= 7, `ADR 0060 lists the cluster metrics: ${[...planned]}`);

  const used = new Set();
  for (const p of panels) {
    assert.equal(p.datasource?.uid, uid, `panel "${p.title}" uses the provisioned datasource`);
    for (const target of p.targets) {
      assert.equal(target.datasource?.uid, uid, `panel "${p.title}" target ${target.refId}`);
      for (const name of metricNames(target.expr)) {
        assert.ok(registered.has(name) || planned.has(name), `panel "${p.title}": ${name} is not a Chorus metric`);
        used.add(name);
      }
    }
  }
  // What the dashboard is for: connections, calls, rooms, SFU packets, TURN allocations, ack
  // latency (chat included), and every cluster metric with the relay latency.
  for (const name of [
    'chorus_signaling_connections',
    'chorus_calls_active',
    'chorus_sfu_rooms',
    'chorus_sfu_rtp_packets_total',
    'chorus_turn_allocations_active',
    'chorus_signaling_event_seconds',
    ...planned,
  ]) {
    assert.ok(used.has(name), `the dashboard shows ${name}`);
  }
});
