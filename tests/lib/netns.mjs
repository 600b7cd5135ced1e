// A shaped link for browser tests: a network namespace joined to this one by a veth pair, with
// a token bucket (`tc tbf`) on the host end that limits what reaches the namespace, i.e. the
// downlink of a browser started inside it. Everything stays on this machine: the host end
// gets 10.213.N.1/30 and the namespace end 10.213.N.2/30, with N from the process id so that
// two test processes never collide.
//
// Needs root, `ip` (iproute2) and `tc`. Lifecycle: `createShapedLink()` → `limit(kbit)` /
// `lift()` any number of times → `remove()` (also run on process exit), which deletes the
// namespace and with it both veth ends.

import { execFile, execFileSync } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Why this machine cannot shape a link (not root, no `ip` or `tc`), or null when it can. */
export function shapingUnavailable() {
  if (process.getuid?.() !== 0) return 'shaping a link needs root (ip netns, tc)';
  for (const tool of ['ip', 'tc']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      return `\`${tool}\` is missing (apt-get install -y iproute2)`;
    }
  }
  return null;
}

/**
 * Creates the namespace and the veth pair. Returns
 * `{namespace, hostIp, peerIp, hostDevice, chromium, limit(kbit), lift(), remove()}`, where
 * `chromium` is an executable that runs `chromiumPath` inside the namespace.
 */
export async function createShapedLink({ chromiumPath }) {
  const n = process.pid % 250;
  const namespace = `chorus-shaped-${process.pid}`;
  const hostDevice = `csh${process.pid}h`.slice(0, 15);
  const peerDevice = `csh${process.pid}n`.slice(0, 15);
  const hostIp = `10.213.${n}.1`;
  const peerIp = `10.213.${n}.2`;
  const ip = (...args) => run('ip', args);
  const inside = (...args) => run('ip', ['netns', 'exec', namespace, ...args]);

  // Leftovers of an earlier process with the same pid.
  await ip('netns', 'del', namespace).catch(() => {});
  await ip('link', 'del', hostDevice).catch(() => {});

  await ip('netns', 'add', namespace);
  const dir = await mkdtemp(join(tmpdir(), 'chorus-shaped-'));
  let removed = false;
  const remove = async () => {
    if (removed) return;
    removed = true;
    await ip('netns', 'del', namespace).catch(() => {});
    await ip('link', 'del', hostDevice).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  process.once('exit', () => {
    if (!removed) {
      try {
        execFileSync('ip', ['netns', 'del', namespace], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  });
  try {
    await ip('link', 'add', hostDevice, 'type', 'veth', 'peer', 'name', peerDevice);
    await ip('link', 'set', peerDevice, 'netns', namespace);
    await ip('addr', 'add', `${hostIp}/30`, 'dev', hostDevice);
    await ip('link', 'set', hostDevice, 'up');
    await inside('ip', 'addr', 'add', `${peerIp}/30`, 'dev', peerDevice);
    await inside('ip', 'link', 'set', peerDevice, 'up');
    await inside('ip', 'link', 'set', 'lo', 'up');

    const chromium = join(dir, 'chromium-in-namespace');
    await writeFile(chromium, `#!/bin/sh\nexec ip netns exec ${namespace} ${chromiumPath} "$@"\n`);
    await chmod(chromium, 0o755);

    return {
      namespace,
      hostIp,
      peerIp,
      hostDevice,
      chromium,
      /**
       * Limits the namespace's downlink to `kbit` kbit/s: a token bucket on the host end's
       * egress, with a queue of at most `latencyMs` (a bottleneck router's buffer; what
       * overflows it is dropped).
       */
      async limit(kbit, { latencyMs = 400 } = {}) {
        // The bucket holds a few full-size packets, so a video frame's burst is paced out.
        await run('tc', [
          'qdisc', 'replace', 'dev', hostDevice, 'root', 'tbf',
          'rate', `${kbit}kbit`, 'burst', '8kb', 'latency', `${latencyMs}ms`,
        ]);
      },
      /** Removes the limit. */
      async lift() {
        await run('tc', ['qdisc', 'del', 'dev', hostDevice, 'root']).catch(() => {});
      },
      remove,
    };
  } catch (e) {
    await remove();
    throw e;
  }
}
