// Describes where and on what code a bench run happened, so a figure in docs/benchmarks.md can be
// compared only with figures from a like machine and traced to a commit.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

/** The machine a run happened on. */
export interface MachineInfo {
  readonly cpuModel: string;
  /** Logical CPUs Node can use. */
  readonly cores: number;
  readonly totalMemoryBytes: number;
  /** e.g. "Linux 6.1.0-18-amd64 (x64)". */
  readonly os: string;
  /** e.g. "v20.19.0". */
  readonly node: string;
}

/** Reads the machine description from `node:os` and `process`. */
export function describeMachine(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown CPU',
    cores: os.availableParallelism(),
    totalMemoryBytes: os.totalmem(),
    os: `${os.type()} ${os.release()} (${os.arch()})`,
    node: process.version,
  };
}

/** One line for the report, e.g. "Intel Xeon, 2 cores, 7.8 GiB RAM, Linux 6.1 (x64), Node v20.19.0". */
export function formatMachine(machine: MachineInfo): string {
  const gib = (machine.totalMemoryBytes / 1024 ** 3).toFixed(1);
  return `${machine.cpuModel}, ${machine.cores} cores, ${gib} GiB RAM, ${machine.os}, Node ${machine.node}`;
}

/** The machine's CPU time so far, all CPUs together (Linux /proc/stat, in clock ticks). */
export interface CpuTimes {
  readonly totalTicks: number;
  /** Time a virtual machine's CPUs were ready to run but the hypervisor ran something else. */
  readonly stealTicks: number;
}

/** Reads /proc/stat's "cpu" line; undefined where there is none (not Linux). */
export function readCpuTimes(): CpuTimes | undefined {
  let line: string | undefined;
  try {
    line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0];
  } catch {
    return undefined;
  }
  // cpu user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
  // already counted in user and nice.
  const fields = line?.startsWith('cpu ') ? line.trim().split(/\s+/).slice(1, 9).map(Number) : [];
  if (fields.length < 8 || fields.some((n) => !Number.isFinite(n))) return undefined;
  return {
    totalTicks: fields.reduce((sum, n) => sum + n, 0),
    stealTicks: fields[7] as number,
  };
}

/**
 * Share of the machine's CPU time between two readings that the hypervisor stole (0..1), or
 * undefined without readings. On a shared virtual machine this is what makes wall-clock figures
 * drift: a thread that is ready to run simply does not, for a while.
 */
export function stealShare(
  before: CpuTimes | undefined,
  after: CpuTimes | undefined,
): number | undefined {
  if (before === undefined || after === undefined) return undefined;
  const total = after.totalTicks - before.totalTicks;
  return total > 0 ? (after.stealTicks - before.stealTicks) / total : undefined;
}

/**
 * The short hash of HEAD, marked when the working tree differs from it (the figures then belong
 * to code no commit holds); "uncommitted" when there is no commit or no git.
 */
export function describeCommit(repoRoot: string): string {
  let hash: string;
  try {
    hash = git(['rev-parse', '--short', 'HEAD'], repoRoot);
  } catch {
    return 'uncommitted';
  }
  let dirty = false;
  try {
    // The report file itself is left out: each run appends to it before anyone commits.
    dirty =
      git(['status', '--porcelain', '--', '.', ':(exclude)docs/benchmarks.md'], repoRoot) !== '';
  } catch {
    // Status is only a hint next to a hash we already have.
  }
  return dirty ? `${hash} + uncommitted changes` : hash;
}

function git(args: readonly string[], cwd: string): string {
  return execFileSync('git', args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  }).trim();
}
