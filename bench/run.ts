// The bench harness behind `npm run bench`: runs every bench/*.bench.ts file in this process, one
// after the other (sorted by name; argv[2] keeps only files whose name contains it), prints one
// Markdown table of all figures and appends it to docs/benchmarks.md. Missed targets do not fail
// the run (benchmarks are noisy; people read the table); a bench that throws does, and such a
// run is not appended.

import { appendFileSync, existsSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import type { Bench, BenchFigure } from './bench-types.js';
import {
  describeCommit,
  describeMachine,
  formatMachine,
  readCpuTimes,
  stealShare,
} from './machine-info.js';
import { formatRun, formatSummary, formatTable, type BenchFailure } from './markdown-report.js';

const BENCH_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(BENCH_DIR, '..');
const REPORT_PATH = join(REPO_ROOT, 'docs', 'benchmarks.md');
const BENCH_SUFFIX = '.bench.ts';

/** Checks a bench module's export at the boundary: a file may export anything. */
function toBench(module: unknown, file: string): Bench {
  const exported: Partial<Record<string, unknown>> =
    typeof module === 'object' && module !== null ? module : {};
  const candidate = exported.default ?? exported.bench;
  if (typeof candidate === 'object' && candidate !== null) {
    const { name, run } = candidate as Record<string, unknown>;
    if (typeof name === 'string' && typeof run === 'function') return candidate as Bench;
  }
  throw new Error(`${file} must export (default or as "bench") an object { name, run() }`);
}

async function main(): Promise<number> {
  const filter = process.argv[2];
  const files = readdirSync(BENCH_DIR)
    .filter((file) => file.endsWith(BENCH_SUFFIX))
    .filter((file) => filter === undefined || file.includes(filter))
    .sort();
  if (files.length === 0) {
    console.error(
      `no bench/*${BENCH_SUFFIX} file${filter === undefined ? '' : ` matches "${filter}"`}`,
    );
    return 1;
  }

  const date = new Date().toISOString();
  const figures: BenchFigure[] = [];
  const failures: BenchFailure[] = [];
  const steal: { bench: string; share: number }[] = [];
  for (const file of files) {
    // Progress goes to stderr so stdout carries only the report.
    console.error(`bench: ${file} …`);
    const started = performance.now();
    const cpuBefore = readCpuTimes();
    try {
      const bench = toBench(await import(pathToFileURL(join(BENCH_DIR, file)).href), file);
      figures.push(...(await bench.run()));
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      console.error(`bench: ${file} failed\n${message}`);
      failures.push({
        bench: file,
        message: error instanceof Error ? error.message : String(error),
      });
    }
    const share = stealShare(cpuBefore, readCpuTimes());
    if (share !== undefined) steal.push({ bench: file.slice(0, -BENCH_SUFFIX.length), share });
    console.error(`bench: ${file} took ${((performance.now() - started) / 1000).toFixed(1)} s`);
  }

  console.log(formatTable(figures));
  console.log('');
  console.log(formatSummary(figures, failures));

  const section = formatRun(
    {
      date,
      commit: describeCommit(REPO_ROOT),
      machine: formatMachine(describeMachine()),
      ...(filter === undefined ? {} : { filter }),
      steal,
    },
    figures,
    failures,
  );
  if (failures.length > 0) {
    // The report is a record of measurements; a run with a broken bench is not one.
    console.error(`bench: ${failures.length} bench(es) failed; nothing appended to ${REPORT_PATH}`);
    return 1;
  }
  if (!existsSync(REPORT_PATH)) writeFileSync(REPORT_PATH, '# Benchmarks\n');
  appendFileSync(REPORT_PATH, `\n${section}`);
  console.error(`bench: appended to ${REPORT_PATH}`);
  return 0;
}

process.exitCode = await main();
