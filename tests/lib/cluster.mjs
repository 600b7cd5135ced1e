// Several real `chorus serve --dev` processes forming one cluster over the Redis at
// 127.0.0.1:6379 (or $CHORUS_TEST_REDIS_URL), for tests that span nodes; and a small TCP load
// balancer in front of them, for clients that must reach "a live node" after theirs went away.
//
// Each cluster gets its own key prefix and shares one HS256 secret between its nodes (so a dev
// token minted by one node is taken by every node). `stop()` stops the nodes still running
// (SIGTERM, exit 0 asserted) and deletes every key under the prefix.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createConnection, createServer } from 'node:net';
import { promisify } from 'node:util';
import { startServer } from './server.mjs';
import { eventually } from './wait.mjs';

const run = promisify(execFile);

export const REDIS_URL = process.env.CHORUS_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** `redis-cli` arguments that reach REDIS_URL. */
function redisArgs() {
  const url = new URL(REDIS_URL);
  return ['-h', url.hostname || '127.0.0.1', '-p', url.port || '6379'];
}

/** Runs one `redis-cli` command; resolves with its stdout, trimmed. */
export async function redis(...args) {
  const { stdout } = await run('redis-cli', [...redisArgs(), ...args], { timeout: 10_000 });
  return stdout.trim();
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(prefix) {
  const keys = (await redis('--scan', '--pattern', `${prefix}*`)).split('\n').filter(Boolean);
  for (let i = 0; i < keys.length; i += 100) await redis('DEL', ...keys.slice(i, i + 100));
}

/**
 * Starts `count` nodes (ids `n1`, `n2`, ...) under a fresh prefix and waits until each one sees
 * all of them. Timers are short, as in the Rust cluster tests: heartbeat every 500 ms, a node is
 * stale after 2 s, a relayed request times out after 3 s. `env` adds `CHORUS_*` settings for
 * every node (e.g. `CHORUS_SERVER_DRAIN_TIMEOUT`).
 * @param {{name: string, count?: number, env?: Record<string,string>}} opts
 */
export async function startCluster({ name, count = 3, env = {} }) {
  const prefix = `chorus-test:${name}:${process.pid}:${randomBytes(4).toString('hex')}:`;
  const secret = randomBytes(32).toString('hex');
  const cluster = {
    prefix,
    nodes: [],
    /** The node that owns `space` (a call id or `room:<name>`), by id, from Redis. */
    async ownerOf(space) {
      const id = await redis('GET', `${prefix}owner:${space}`);
      return cluster.nodes.find((n) => n.id === id) ?? null;
    },
    /** Stops every node still running (SIGTERM, exit 0 asserted), then deletes the keys. */
    async stop() {
      try {
        for (const node of cluster.nodes) await node.stop();
      } finally {
        for (const node of cluster.nodes) node.kill();
        await deleteKeys(prefix);
      }
    },
  };
  try {
    for (let i = 1; i <= count; i++) {
      const node = await startServer({
        env: {
          CHORUS_LOG_LEVEL: 'warn',
          CHORUS_AUTH_SECRET: secret,
          CHORUS_CLUSTER_REDIS_URL: REDIS_URL,
          CHORUS_CLUSTER_NODE_ID: `n${i}`,
          CHORUS_CLUSTER_KEY_PREFIX: prefix,
          CHORUS_CLUSTER_HEARTBEAT_INTERVAL: '500ms',
          CHORUS_CLUSTER_NODE_TIMEOUT: '2s',
          CHORUS_CLUSTER_REQUEST_TIMEOUT: '3s',
          CHORUS_SFU_PUBLIC_IPS: '127.0.0.1',
          CHORUS_TURN_ENABLED: 'false',
          ...env,
        },
      });
      node.id = `n${i}`;
      cluster.nodes.push(node);
    }
    for (const node of cluster.nodes) {
      await eventually(async () => (await node.metric('chorus_cluster_nodes')) === count, {
        timeoutMs: 10_000,
        what: `node ${node.id} to see ${count} nodes`,
      });
    }
  } catch (e) {
    for (const node of cluster.nodes) node.kill();
    await deleteKeys(prefix).catch(() => {});
    throw e;
  }
  return cluster;
}

/**
 * A TCP load balancer on 127.0.0.1 in front of `nodes`, as an operator's HAProxy would be: each
 * new connection goes to the first node in `nodes` order whose `/ready` answered 200 at the last
 * health check (every 200 ms), so a draining or dead node gets no new connections. Open
 * connections are left alone (they end with their node). `url` is what a browser opens.
 */
export async function startBalancer(nodes) {
  const healthy = new Map(nodes.map((n) => [n, true]));
  let checking = true;
  const check = async () => {
    while (checking) {
      await Promise.all(
        nodes.map(async (n) => {
          try {
            const res = await fetch(`${n.url}/ready`, { signal: AbortSignal.timeout(500) });
            healthy.set(n, res.status === 200);
          } catch {
            healthy.set(n, false);
          }
        }),
      );
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const checker = check();
  const sockets = new Set();
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    const target = nodes.find((n) => healthy.get(n));
    if (!target) return client.destroy();
    const upstream = createConnection({ host: '127.0.0.1', port: target.port });
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(0, '127.0.0.1', ok);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    async close() {
      checking = false;
      await checker;
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
