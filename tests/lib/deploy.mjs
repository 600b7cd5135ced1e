// Helpers for the tests of the deployment files (docker-compose.yml, deploy/, scripts/cluster.sh):
// running external tools with a deadline, requiring them (a missing tool fails under CI=true),
// reading YAML through the Python that Debian's docker-compose depends on, and the queries of the
// Grafana dashboard.

import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Whether `tool` is on PATH. */
export const onPath = (tool) => spawnSync('sh', ['-c', `command -v '${tool}'`]).status === 0;

/**
 * Returns true when every tool is on PATH. Otherwise fails the test under CI=true (a missing tool
 * is a broken machine there), and skips it elsewhere with the install hint.
 */
export function requireTools(t, tools, hint) {
  const missing = tools.filter((tool) => !onPath(tool));
  if (missing.length === 0) return true;
  const message = `${missing.join(', ')} not found (${hint})`;
  if (process.env.CI === 'true') assert.fail(`${message}; required under CI=true`);
  t.skip(message);
  return false;
}

/**
 * Runs `cmd args` to completion (SIGKILL after `timeoutMs`): `{code, stdout, stderr}`.
 * @param {{cwd?: string, env?: Record<string,string>, input?: string, timeoutMs?: number}} [opts]
 */
export function run(cmd, args, opts = {}) {
  return new Promise((ok, fail) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd ?? REPO_ROOT,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      fail(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      ok({ code: code ?? `signal ${signal}`, stdout, stderr });
    });
    // A tool that never reads its input closes the pipe early; that is not an error.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

/** Parses YAML with python3-yaml (a dependency of Debian's docker-compose). */
export async function parseYaml(text) {
  const r = await run('python3', ['-c', 'import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], {
    input: text,
  });
  assert.equal(r.code, 0, `python3 -c 'import yaml' failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

export const DASHBOARD = join(REPO_ROOT, 'deploy/grafana/dashboards/chorus.json');

/** Every panel of the dashboard that queries (rows excluded), with its targets. */
export function dashboardPanels() {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8'));
  return dashboard.panels.filter((p) => p.type !== 'row');
}

/** The PromQL of every dashboard target, with Grafana's variables replaced for a real query. */
export function dashboardQueries() {
  return dashboardPanels().flatMap((p) =>
    p.targets.map((t) => ({
      panel: p.title,
      expr: t.expr.replaceAll('$__rate_interval', '1m').replaceAll('$node', '.*'),
    })),
  );
}

/** Metric names a PromQL expression reads (histogram series map to their histogram). */
export function metricNames(expr) {
  return [...expr.matchAll(/\bchorus_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}
