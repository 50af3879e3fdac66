import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * A figure the docs quote, recorded by the test that measures it. `scripts/doc-figures.mjs` writes
 * the docs' figure tables from these records (`npm run docs:figures`) and, in CI, checks that the
 * claims in the docs are exactly the claims the tests assert and that this run met every one.
 */
export interface Figure {
  /** Stable id; its first dot-separated part names the docs table (e.g. `recovery.kill-5s`). */
  id: string;
  /** What was measured, as the docs' table shows it. */
  scenario: string;
  /** The measured value. */
  value: number;
  /** Unit shown after the value (`ms`, `%`, `lost`…). */
  unit: string;
  /** The bound the test asserts: the value must be at most `max` / at least `min`. */
  max?: number;
  min?: number;
}

/** Where the records go: test-results/figures.jsonl (git-ignored), or $FIGURES_FILE. */
export const FIGURES_FILE =
  process.env.FIGURES_FILE ?? join(process.cwd(), 'test-results', 'figures.jsonl');

/** Records `figure` (one JSON line) and returns its value, for the test's own assertion. */
export function recordFigure(figure: Figure): number {
  mkdirSync(dirname(FIGURES_FILE), { recursive: true });
  appendFileSync(FIGURES_FILE, `${JSON.stringify({ ...figure, at: new Date().toISOString() })}\n`);
  return figure.value;
}
