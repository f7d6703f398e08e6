import { describe, expect, it } from 'vitest';
import { Job } from '../src/job.js';
import { UsageLedger } from '../src/usage.js';

function job(owner: string, coldStart = false): Job {
  const made = new Job(
    { id: `${owner}-${Math.random()}`, owner, model: 'm', inputs: {}, priority: 5 },
    undefined,
    0,
  );
  made.coldStart = coldStart;
  return made;
}

describe('UsageLedger', () => {
  it('starts empty', () => {
    expect(new UsageLedger().rows()).toEqual([]);
  });

  it('adds up compute-seconds, jobs and cold starts per key and model version', () => {
    const ledger = new UsageLedger();
    ledger.recordRun('det', '1', 250, [job('alice', true)]);
    ledger.recordRun('det', '1', 750, [job('alice')]);
    ledger.recordRun('det', '2', 100, [job('alice')]);
    ledger.recordRun('rec', '1', 40, [job('bob')]);
    const rows = ledger.rows();
    expect(rows).toHaveLength(3);
    expect(rows).toContainEqual({
      key: 'alice',
      model: 'det',
      version: '1',
      computeSeconds: 1,
      jobs: 2,
      coldStarts: 1,
    });
    expect(rows).toContainEqual({
      key: 'alice',
      model: 'det',
      version: '2',
      computeSeconds: 0.1,
      jobs: 1,
      coldStarts: 0,
    });
    expect(ledger.rows('bob')).toEqual([
      { key: 'bob', model: 'rec', version: '1', computeSeconds: 0.04, jobs: 1, coldStarts: 0 },
    ]);
    expect(ledger.rows('carol')).toEqual([]);
  });

  it('splits a batched run evenly among its jobs, across keys', () => {
    const ledger = new UsageLedger();
    ledger.recordRun('m', '1', 900, [job('alice'), job('alice'), job('bob', true)]);
    const [alice] = ledger.rows('alice');
    const [bob] = ledger.rows('bob');
    expect(alice!.computeSeconds).toBeCloseTo(0.6, 12);
    expect(alice!.jobs).toBe(2);
    expect(bob!.computeSeconds).toBeCloseTo(0.3, 12);
    expect(bob!.coldStarts).toBe(1);
    // An empty run bills nobody.
    ledger.recordRun('m', '1', 500, []);
    expect(ledger.rows()).toHaveLength(2);
  });

  it('hands out copies, so a report cannot change the ledger', () => {
    const ledger = new UsageLedger();
    ledger.recordRun('m', '1', 1000, [job('alice')]);
    const [row] = ledger.rows();
    (row as { jobs: number }).jobs = 99;
    expect(ledger.rows()[0]!.jobs).toBe(1);
  });
});
