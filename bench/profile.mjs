// `npm run bench:profile -- [--variant lib-1] [--path read] [--seconds 8]`: runs one variant of the
// benchmark (any of bench/run.mjs's, Express or Nest, with its own memcached or redis-server) under `node --cpu-prof` with the same load as bench/run.mjs (autocannon, 50
// connections over 50 sessions), then prints where the server's CPU time went: self time by
// package (or node internals / GC) and the top functions. The .cpuprofile is kept in
// bench-results/ for Chrome DevTools or speedscope.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { Cleanup, root } from './support.mjs';
import { ALL_VARIANTS, APPS, startBackend, VARIANTS } from './variants.mjs';

const { values: opts } = parseArgs({
  options: {
    variant: { type: 'string', default: 'lib-1' },
    path: { type: 'string', default: 'read' },
    seconds: { type: 'string', default: '8' },
    top: { type: 'string', default: '25' },
  },
});
if (!ALL_VARIANTS.includes(opts.variant)) {
  throw new Error(`--variant must be one of ${ALL_VARIANTS.join(', ')}`);
}
if (!['read', 'write'].includes(opts.path)) throw new Error('--path must be read or write');

const dir = join(root, 'bench-results', `profile-${opts.variant}-${opts.path}`);

async function main() {
  const cleanup = new Cleanup();
  try {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const { url, skipped } = await startBackend(cleanup, opts.variant);
    if (skipped) throw new Error(`${opts.variant}: ${skipped}`);
    const child = cleanup.child(
      spawn(
        process.execPath,
        ['--cpu-prof', `--cpu-prof-dir=${dir}`, APPS[VARIANTS[opts.variant].app].script],
        {
          env: { ...process.env, BENCH_VARIANT: opts.variant, BENCH_STORE_URL: url ?? '' },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      ),
    );
    const port = await new Promise((resolve, reject) => {
      child.once('exit', (code) =>
        reject(new Error(`the app exited (${code}) before it was ready`)),
      );
      child.stdout.on('data', (d) => {
        const ready = /ready (\d+)/.exec(String(d));
        if (ready) resolve(Number(ready[1]));
      });
    });
    const base = `http://127.0.0.1:${port}`;
    const cookies = [];
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`${base}/login?user=u${i}`, { method: 'POST' });
      cookies.push(res.headers.getSetCookie()[0]?.split(';')[0] ?? '');
    }
    let next = 0;
    const result = await autocannon({
      url: base,
      connections: 50,
      duration: Number(opts.seconds),
      requests: [
        {
          method: opts.path === 'read' ? 'GET' : 'POST',
          path: `/${opts.path}`,
          setupRequest: (req) => ({ ...req, headers: { cookie: cookies[next++ % 50] } }),
        },
      ],
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGINT'); // the app exits cleanly, so node writes the profile
    await exited;
    console.log(
      `# CPU profile: ${opts.variant} ${opts.path}, ${Math.round(result.requests.average)} req/s, ` +
        `${result.non2xx} non-2xx\n`,
    );
    const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) throw new Error('no .cpuprofile was written');
    summarize(JSON.parse(readFileSync(join(dir, file), 'utf8')));
    console.log(`\nprofile: ${join(dir, file)}`);
  } finally {
    await cleanup.run();
  }
}

/** Which package (or part of node) a profile node's code belongs to. */
function owner(frame) {
  const url = frame.url ?? '';
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  if (url.startsWith('node:')) return 'node internals';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  if (url.includes('/dist/')) return 'nestjs-session-cache (dist)';
  if (url.includes('/bench/')) return 'bench app';
  return url;
}

function summarize(profile) {
  const self = new Map();
  const total = profile.samples.length;
  const counts = new Map();
  for (const id of profile.samples) counts.set(id, (counts.get(id) ?? 0) + 1);
  const byOwner = new Map();
  for (const node of profile.nodes) {
    const hits = counts.get(node.id) ?? 0;
    if (hits === 0) continue;
    const frame = node.callFrame;
    const where = owner(frame);
    byOwner.set(where, (byOwner.get(where) ?? 0) + hits);
    const name = `${frame.functionName || '(anonymous)'}  ${where}${
      frame.url && !frame.url.startsWith('node:') ? `:${frame.lineNumber + 1}` : ''
    }`;
    self.set(name, (self.get(name) ?? 0) + hits);
  }
  const pct = (n) => `${((100 * n) / total).toFixed(1)}%`;
  console.log('| self time | where |\n|---:|---|');
  for (const [where, hits] of [...byOwner].sort((a, b) => b[1] - a[1])) {
    console.log(`| ${pct(hits)} | ${where} |`);
  }
  console.log(`\n| self time | function |\n|---:|---|`);
  for (const [name, hits] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(opts.top))) {
    console.log(`| ${pct(hits)} | ${name.replaceAll('|', '\\|')} |`);
  }
}

main().catch((err) => {
  console.error(err?.stack ?? err);
  process.exitCode = 1;
});
