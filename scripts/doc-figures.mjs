// Figures in the docs come from the tests that measure them (issue 12).
//
// Tests record each figure they assert (test/support/figures.ts) in test-results/figures.jsonl:
// an id, the scenario, the measured value and the bound the test asserts. The docs hold one
// generated table per group of figures (the first part of the figures' ids), between
//
//   <!-- figures:GROUP -->  …  <!-- /figures:GROUP -->
//
// `npm run docs:figures` (node scripts/doc-figures.mjs --write) rewrites those tables from the
// last test run. `--check` (CI, right after npm test) fails when a table's scenarios or claims
// differ from what the tests assert now, or when this run missed a claim. The last column
// ("last measured") is information: it changes from run to run and is not compared.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const figuresFile = process.env.FIGURES_FILE ?? join(root, 'test-results', 'figures.jsonl');
const mode = process.argv[2];
if (mode !== '--write' && mode !== '--check') {
  console.error('usage: node scripts/doc-figures.mjs --write | --check');
  process.exit(2);
}
if (!existsSync(figuresFile)) {
  console.error(`doc-figures: ${relative(root, figuresFile)} is missing: run npm test first.`);
  process.exit(1);
}

/** The last record of every figure id, in the order first recorded. */
const figures = new Map();
for (const line of readFileSync(figuresFile, 'utf8').split('\n')) {
  if (line.trim()) {
    const figure = JSON.parse(line);
    figures.set(figure.id, figure);
  }
}

const show = (n) => n.toLocaleString('en-US', { maximumFractionDigits: 1 });
const withUnit = (n, unit) => (unit === '%' ? `${show(n)}%` : `${show(n)} ${unit}`.trim());
function claimOf(f) {
  if (f.min !== undefined && f.min === f.max) return `= ${withUnit(f.max, f.unit)}`;
  const parts = [];
  if (f.min !== undefined) parts.push(`≥ ${withUnit(f.min, f.unit)}`);
  if (f.max !== undefined) parts.push(`≤ ${withUnit(f.max, f.unit)}`);
  return parts.join(', ') || '—';
}
const met = (f) =>
  (f.min === undefined || f.value >= f.min) && (f.max === undefined || f.value <= f.max);

function render(group) {
  const rows = [
    '| Scenario | Claim (asserted by the test) | Last measured |',
    '| --- | --- | --- |',
  ];
  for (const f of group)
    rows.push(`| ${f.scenario} | ${claimOf(f)} | ${show(f.value)} ${f.unit} |`);
  return rows.join('\n');
}

/** Scenario and claim of each row (what --check compares). */
const claims = (table) =>
  table
    .trim()
    .split('\n')
    .slice(2)
    .map((row) =>
      row
        .split('|')
        .slice(1, 3)
        .map((cell) => cell.trim())
        .join(' | '),
    );

const docs = ['README.md'];
if (existsSync(join(root, 'docs'))) {
  for (const f of readdirSync(join(root, 'docs')).sort())
    if (f.endsWith('.md')) docs.push(`docs/${f}`);
}
const BLOCK = /(<!-- figures:([\w-]+) -->\n)([\s\S]*?)(\n<!-- \/figures:\2 -->)/g;
/** Blocks that hold a script's whole (deterministic) output: `<!-- output:NAME -->`. */
const OUTPUT = /(<!-- output:([\w-]+) -->\n)([\s\S]*?)(\n<!-- \/output:\2 -->)/g;
const BENCH = /(<!-- bench:([\w-]+) -->\n)([\s\S]*?)(\n<!-- \/bench:\2 -->)/g;
const SCRIPTS = { 'ring-balance': ['scripts/ring-balance.mjs', '--docs'] };
const outputs = new Map();
function outputOf(name) {
  if (!outputs.has(name)) {
    const [script, ...args] = SCRIPTS[name];
    const run = spawnSync(process.execPath, [join(root, script), ...args], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`${script} failed: ${run.stderr}`);
    outputs.set(name, run.stdout.trim());
  }
  return outputs.get(name);
}
const problems = [];
let blocks = 0;
for (const doc of docs) {
  const file = join(root, doc);
  const text = readFileSync(file, 'utf8');
  const next = text.replace(BLOCK, (all, open, name, body, close) => {
    blocks++;
    const where = `${doc} (figures:${name})`;
    const group = [...figures.values()].filter((f) => f.id.split('.')[0] === name);
    if (group.length === 0) {
      problems.push(`${where}: no test recorded a figure of this group`);
      return all;
    }
    for (const f of group) {
      if (!met(f))
        problems.push(
          `${where}: "${f.scenario}" measured ${show(f.value)} ${f.unit}, claim ${claimOf(f)}`,
        );
    }
    const table = render(group);
    if (mode === '--check' && claims(body).join('\n') !== claims(table).join('\n')) {
      problems.push(
        `${where}: the doc's table no longer says what the tests assert; run npm test, then ` +
          `npm run docs:figures, and commit.\n--- the doc\n${body}\n--- the tests\n${table}`,
      );
    }
    return `${open}${table}${close}`;
  });
  const withOutputs = next.replace(OUTPUT, (all, open, name, body, close) => {
    blocks++;
    if (!SCRIPTS[name]) {
      problems.push(`${doc} (output:${name}): no script of that name`);
      return all;
    }
    const output = outputOf(name);
    if (mode === '--check' && body.trim() !== output) {
      problems.push(
        `${doc} (output:${name}): differs from what ${SCRIPTS[name].join(' ')} prints now; run ` +
          'npm run docs:figures and commit.',
      );
    }
    return `${open}${output}${close}`;
  });
  // <!-- bench:NAME -->: the report of the last `npm run bench -- --out NAME` (bench-results/NAME.md),
  // written with --write when that file exists; CI cannot re-run the benchmark, so --check only
  // asks that the block names the run it came from.
  const withBench = withOutputs.replace(BENCH, (all, open, name, body, close) => {
    blocks++;
    const report = join(root, 'bench-results', `${name}.md`);
    if (mode === '--write' && existsSync(report)) {
      const text = readFileSync(report, 'utf8')
        .trim()
        .replace(/^# .*\n+/, '');
      return `${open}${text.replace(/^## /gm, '#### ')}${close}`;
    }
    if (mode === '--check' && !/commit [0-9a-f]{7}/.test(body)) {
      problems.push(`${doc} (bench:${name}): the block does not name the commit it measured`);
    }
    return all;
  });
  if (mode === '--write' && withBench !== text) writeFileSync(file, withBench);
}
if (blocks === 0)
  problems.push('no <!-- figures:… --> or <!-- output:… --> block in README.md or docs/');
if (problems.length > 0) {
  console.error(`doc-figures: ${problems.length} problem(s)\n${problems.join('\n')}`);
  process.exit(1);
}
console.log(
  `doc-figures: ${blocks} table(s) ${mode === '--write' ? 'written from' : 'match'} ${relative(root, figuresFile)}`,
);
