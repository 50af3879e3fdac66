// `npm run ring:balance`: how evenly the session ring (dist/memcached/ring.js, the code the library
// runs) spreads session keys over N servers, how many keys move when one server is added, and how
// the R = 2 replicas are spread. Prints a markdown report, or JSON with `--json`.
//
// The keys are deterministic (sha256 of a counter), so the report is the same on every run.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const K = 200_000;
const SEED = 'ring-balance-v1';
const BALANCE_SIZES = [3, 16, 17, 64, 65];
const GROWTH = [
  [3, 4],
  [16, 17],
  [64, 65],
];
const REPLICA_SIZES = [3, 16];
const R = 2;

const ringPath = fileURLToPath(new URL('../dist/memcached/ring.js', import.meta.url));
if (!existsSync(ringPath)) {
  console.error(
    `${ringPath} is missing: run \`npm run build\` first (or \`npm run ring:balance\`).`,
  );
  process.exit(1);
}
const { SessionCacheRing } = createRequire(import.meta.url)(ringPath);

/** Server i as deployments name them: 16 hosts per /24 subnet, default memcached port. */
const serverName = (i) => `10.0.${Math.floor(i / 16)}.${11 + (i % 16)}:11211`;
const servers = (n) => Array.from({ length: n }, (_, i) => serverName(i));

/** Session-like key i: `sess:` + 32 base64url characters, from sha256 of a seeded counter. */
const sessionKey = (i) =>
  'sess:' + createHash('sha256').update(`${SEED}:${i}`).digest('base64url').slice(0, 32);

const started = Date.now();
const keys = Array.from({ length: K }, (_, i) => sessionKey(i));

/** For every key, its primary and secondary node index on a ring of n servers. */
function place(n) {
  const ring = new SessionCacheRing(servers(n));
  const primary = new Uint8Array(K);
  const secondary = new Uint8Array(K);
  for (let k = 0; k < K; k++) {
    const nodes = ring.nodesFor(keys[k], R);
    primary[k] = nodes[0];
    secondary[k] = nodes[1];
  }
  return { n, primary, secondary };
}

const placements = new Map();
for (const n of new Set([...BALANCE_SIZES, ...GROWTH.flat(), ...REPLICA_SIZES])) {
  placements.set(n, place(n));
}

/** Ideal, min, max, max/ideal, min/ideal and coefficient of variation of per-node counts. */
function spread(counts, ideal) {
  const mean = counts.reduce((a, b) => a + b, 0) / counts.length;
  const variance = counts.reduce((a, c) => a + (c - mean) ** 2, 0) / counts.length;
  const min = Math.min(...counts);
  const max = Math.max(...counts);
  return {
    ideal,
    min,
    max,
    minOverIdeal: min / ideal,
    maxOverIdeal: max / ideal,
    cv: Math.sqrt(variance) / mean,
  };
}

const balance = BALANCE_SIZES.map((n) => {
  const counts = new Array(n).fill(0);
  for (const p of placements.get(n).primary) counts[p]++;
  return { servers: n, ...spread(counts, K / n) };
});

const growth = GROWTH.map(([from, to]) => {
  const a = placements.get(from);
  const b = placements.get(to);
  let primaryMoved = 0;
  let setChanged = 0;
  let lost = 0;
  for (let k = 0; k < K; k++) {
    const shared =
      Number(b.primary[k] === a.primary[k] || b.primary[k] === a.secondary[k]) +
      Number(b.secondary[k] === a.primary[k] || b.secondary[k] === a.secondary[k]);
    if (a.primary[k] !== b.primary[k]) primaryMoved++;
    if (shared < R) setChanged++;
    if (shared === 0) lost++;
  }
  return {
    from,
    to,
    idealMoved: 1 / to,
    primaryMoved: primaryMoved / K,
    idealSetChanged: R / to,
    replicaSetChanged: setChanged / K,
    lost: lost / K,
  };
});

const replicas = REPLICA_SIZES.map((n) => {
  const { primary, secondary } = placements.get(n);
  const counts = new Array(n).fill(0);
  for (let k = 0; k < K; k++) {
    counts[primary[k]]++;
    counts[secondary[k]]++;
  }
  return { servers: n, ...spread(counts, (R * K) / n) };
});

const report = {
  keys: K,
  keyFormat: 'sess: + 32 base64url chars of sha256(`' + SEED + ':<i>`)',
  servers: `${serverName(0)}, ${serverName(1)}, … (${serverName(16)} from the 17th)`,
  balance,
  growth,
  replicas: { r: R, nodes: replicas },
};
const elapsed = (Date.now() - started) / 1000;

if (process.argv.includes('--json')) {
  console.log(JSON.stringify(report, null, 2));
} else {
  const pct = (x, digits = 2) => `${(x * 100).toFixed(digits)}%`;
  const fixed = (x) => x.toFixed(3);
  const int = (x) => Math.round(x).toString();
  const table = (head, rows) =>
    [
      `| ${head.join(' | ')} |`,
      `|${head.map(() => '---:').join('|')}|`,
      ...rows.map((r) => `| ${r.join(' | ')} |`),
    ].join('\n');

  /** Keys per node against the ideal, one row per cluster size. */
  const spreadTable = (ideal, rows) =>
    table(
      ['N', `ideal ${ideal}`, 'min', 'max', 'min/ideal', 'max/ideal', 'CV'],
      rows.map((b) => [
        b.servers,
        int(b.ideal),
        b.min,
        b.max,
        fixed(b.minOverIdeal),
        fixed(b.maxOverIdeal),
        pct(b.cv, 1),
      ]),
    );
  // --docs: the same report as a docs section (docs/scaling.md embeds it; scripts/doc-figures.mjs
  // writes it there and checks in CI that it is what this script prints).
  const docs = process.argv.includes('--docs');
  const h = docs ? '####' : '##';
  console.log(`${docs ? '' : '# Session ring balance (dist/memcached/ring.js)\n\n'}K = ${K} keys (${report.keyFormat}); servers ${report.servers}.

${h} 1. Keys per node (primary)

${spreadTable('K/N', balance)}

${h} 2. Movement when adding one server

${table(
  [
    'N → N+1',
    'ideal 1/(N+1)',
    'primary moved',
    `ideal ${R}/(N+1)`,
    `R=${R} set changed`,
    `R=${R} lost (no common node)`,
  ],
  growth.map((g) => [
    `${g.from} → ${g.to}`,
    pct(g.idealMoved),
    pct(g.primaryMoved),
    pct(g.idealSetChanged),
    pct(g.replicaSetChanged),
    pct(g.lost, 3),
  ]),
)}

${h} 3. R=${R}: keys held per node (primary or secondary)

${spreadTable(`${R}K/N`, replicas)}`);
}
console.error(`(computed in ${elapsed.toFixed(1)} s)`);
