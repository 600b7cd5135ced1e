// Starts the real `chorus` binary for a test file and stops it again.
//
// The binary comes from $CHORUS_BIN (default ../target/debug/chorus relative to tests/). Each
// server gets a free port on 127.0.0.1 chosen at runtime and its own temporary --data-dir, so test
// files never share state. `stop()` sends SIGTERM and asserts a clean exit (code 0).

import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const TESTS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CHORUS_BIN = process.env.CHORUS_BIN
  ? resolve(process.env.CHORUS_BIN)
  : resolve(TESTS_DIR, '../target/debug/chorus');

/** A free TCP port on `host` (bound then released; the server binds it right after). */
export function freePort(host = '127.0.0.1') {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, host, () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts `chorus serve --dev` and waits for /health. `host` (default 127.0.0.1) is the address
 * its HTTP listener and SFU sockets bind to; dev mode binds only loopback, so another host needs
 * `secret` too: the server then runs in production mode with that HS256 secret (no dev token
 * endpoint; `signToken` signs with it).
 * @param {{args?: string[], env?: Record<string,string>, startTimeoutMs?: number, host?: string, secret?: string}} [opts]
 */
export async function startServer(opts = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'chorus-test-'));
  // A port taken between freePort() and bind is retried with another one.
  for (let attempt = 0; ; attempt++) {
    const port = await freePort(opts.host);
    try {
      return await launch(port, dataDir, opts);
    } catch (e) {
      if (attempt >= 2 || !e.addrInUse) {
        await rm(dataDir, { recursive: true, force: true });
        throw e;
      }
    }
  }
}

async function launch(port, dataDir, opts) {
  const host = opts.host ?? '127.0.0.1';
  const mode = opts.secret ? ['--set', `auth.secret=${opts.secret}`] : ['--dev'];
  const args = [
    'serve',
    ...mode,
    '--listen',
    `${host}:${port}`,
    '--data-dir',
    dataDir,
    '--log-format',
    'pretty',
    // The SFU gets ephemeral loopback ports so servers never collide on 7882, and two media
    // workers whatever the machine, so rooms spread over workers in every test.
    '--set',
    `sfu.udp_listen=${host}:0`,
    '--set',
    'sfu.workers=2',
    '--set',
    `sfu.tcp_listen=${host}:0`,
    ...(opts.args ?? []),
  ];
  const child = spawn(CHORUS_BIN, args, {
    env: { ...process.env, NO_COLOR: '1', ...(opts.env ?? {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const keep = (chunk) => {
    output += chunk.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((ok) => {
    child.on('exit', (code, signal) => ok({ code, signal }));
    child.on('error', (error) => ok({ code: null, signal: null, error }));
  });
  let exit = null;
  exited.then((e) => {
    exit = e;
  });

  const url = `http://${host}:${port}`;
  const deadline = Date.now() + (opts.startTimeoutMs ?? 15_000);
  for (;;) {
    if (exit) {
      const err = new Error(
        `chorus exited before it was healthy (${JSON.stringify(exit)}):\n${output}`,
      );
      err.addrInUse = /address already in use|AddrInUse/i.test(output);
      throw err;
    }
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`chorus did not become healthy within the start timeout:\n${output}`);
    }
    await sleep(50);
  }

  let stopped = false;
  const server = {
    url,
    port,
    dataDir,
    wsUrl: `ws://${host}:${port}/ws`,
    child,
    output: () => output,

    /** Mints a token with the dev endpoint: `{token, userId, name}`. */
    async token(name, extra = {}) {
      const res = await fetch(`${url}/api/v1/dev/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, ...extra }),
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(res.status, 200, `dev token for ${name}: HTTP ${res.status}`);
      return res.json();
    },

    /**
     * The sum of a metric's samples over all their labels, from `GET /metrics` (Prometheus text
     * format); 0 when the server exports no such metric.
     */
    async metric(name) {
      const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(5000) });
      assert.equal(res.status, 200, `GET /metrics: HTTP ${res.status}`);
      let sum = 0;
      for (const line of (await res.text()).split('\n')) {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
        if (m && m[1] === name) sum += Number(m[3]);
      }
      return sum;
    },

    /** The HS256 secret: `opts.secret`, or the one dev mode generated in `<data-dir>/dev-secret`. */
    async devSecret() {
      return opts.secret ?? (await readFile(join(dataDir, 'dev-secret'), 'utf8')).trim();
    },

    /** Signs arbitrary claims with the dev secret (HS256), e.g. an already-expired token. */
    async signToken(claims, secret) {
      return signHs256(claims, secret ?? (await server.devSecret()));
    },

    /**
     * SIGTERM, then waits for the process to exit; asserts exit code 0 (graceful shutdown).
     * Kills it hard if it does not exit within `timeoutMs`, and fails then.
     */
    async stop({ timeoutMs = 20_000 } = {}) {
      if (stopped) return;
      stopped = true;
      try {
        if (!exit) {
          child.kill('SIGTERM');
          let timer;
          const timeout = new Promise((r) => {
            timer = setTimeout(() => r('timeout'), timeoutMs);
          });
          const result = await Promise.race([exited, timeout]);
          clearTimeout(timer);
          if (result === 'timeout') {
            child.kill('SIGKILL');
            await exited;
            assert.fail(`chorus did not exit within ${timeoutMs} ms of SIGTERM:\n${output.slice(-4000)}`);
          }
        }
        assert.deepEqual(
          { code: exit.code, signal: exit.signal },
          { code: 0, signal: null },
          `chorus should exit 0 on SIGTERM:\n${output.slice(-4000)}`,
        );
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    },

    /**
     * SIGKILL (a crash: nothing drains), then waits for the process to exit and removes its
     * data dir. `stop()` is a no-op afterwards.
     */
    async crash() {
      if (stopped) return;
      stopped = true;
      if (!exit) child.kill('SIGKILL');
      await exited;
      await rm(dataDir, { recursive: true, force: true });
    },

    /** Hard kill for cleanup after a failure (idempotent). */
    kill() {
      if (!exit) child.kill('SIGKILL');
    },
  };
  // Never leave the server behind if the test process dies abruptly.
  process.once('exit', () => server.kill());
  return server;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** A compact JWT signed with HMAC-SHA256 over `secret` (as UTF-8 bytes). */
export function signHs256(claims, secret) {
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${header}.${payload}`).digest();
  return `${header}.${payload}.${b64url(sig)}`;
}
