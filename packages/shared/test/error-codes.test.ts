import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, isErrorCode, type ErrorCode } from '../src/index.js';

const DOC = new URL('../../../docs/errors.md', import.meta.url);

interface DocRow {
  code: string;
  retryable: string;
  http: string;
  meaning: string;
  action: string;
}

function docRows(): DocRow[] {
  return readFileSync(DOC, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('| `E_'))
    .map((line) => {
      const cells = line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim());
      const [code = '', retryable = '', http = '', meaning = '', action = ''] = cells;
      return { code: code.replaceAll('`', ''), retryable, http, meaning, action };
    });
}

describe('ERROR_CODES', () => {
  const codes = Object.keys(ERROR_CODES) as ErrorCode[];

  it('has codes of the form E_UPPER_SNAKE and sensible HTTP statuses', () => {
    for (const code of codes) {
      expect(code).toMatch(/^E_[A-Z0-9_]+$/);
      expect(ERROR_CODES[code].httpStatus).toBeGreaterThanOrEqual(400);
      expect(ERROR_CODES[code].httpStatus).toBeLessThan(600);
    }
  });

  it('recognises its own codes and nothing else', () => {
    for (const code of codes) expect(isErrorCode(code)).toBe(true);
    for (const other of ['E_NOPE', 'toString', '__proto__', '', 7, null]) {
      expect(isErrorCode(other)).toBe(false);
    }
  });
});

describe('docs/errors.md', () => {
  const rows = docRows();

  it('has exactly one row per code', () => {
    expect(rows.map((row) => row.code).sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it('agrees with the code table on retryable and HTTP status, and says what to do', () => {
    for (const row of rows) {
      expect(isErrorCode(row.code)).toBe(true);
      const info = ERROR_CODES[row.code as ErrorCode];
      expect(row.retryable, row.code).toBe(info.retryable ? 'yes' : 'no');
      expect(Number(row.http), row.code).toBe(info.httpStatus);
      expect(row.meaning, row.code).toBe(info.meaning);
      expect(row.action.length, row.code).toBeGreaterThan(10);
    }
  });
});
