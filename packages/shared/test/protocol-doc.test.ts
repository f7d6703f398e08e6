// docs/protocol.md is the reference the codec is tested against: its hex dumps must be what the
// encoder produces, and each message section's example header must decode as that message.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CLIENT_MESSAGE_TYPES,
  FRAME_PREFIX_BYTES,
  SERVER_MESSAGE_TYPES,
  decodeMessage,
  encodeMessage,
} from '../src/index.js';

const doc = readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8');

function hexDump(frame: Uint8Array): string {
  const lines: string[] = [];
  for (let i = 0; i < frame.length; i += 16) {
    const row = [...frame.subarray(i, i + 16)];
    const hex = row.map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const text = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${i.toString(16).padStart(4, '0')}  ${hex.padEnd(48)} ${text}`);
  }
  return lines.join('\n');
}

/** The first ```json block after the `#### \`type\`` heading. */
function exampleFor(type: string): unknown {
  const start = doc.indexOf(`#### \`${type}\``);
  expect(start, `docs/protocol.md has a section for ${type}`).toBeGreaterThan(0);
  const match = /```json\n([\s\S]*?)\n```/.exec(doc.slice(start));
  expect(match, `section ${type} has a json example`).not.toBeNull();
  return JSON.parse(match![1]!);
}

/** Frames a header by hand, with a zero-filled body laid out as its descriptors say. */
function frameOf(header: Record<string, unknown>): Uint8Array {
  const descriptors = (header.inputs ?? header.outputs ?? []) as {
    offset: number;
    byteLength: number;
  }[];
  const bodyBytes = descriptors.reduce((end, d) => Math.max(end, d.offset + d.byteLength), 0);
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerEnd = FRAME_PREFIX_BYTES + json.byteLength;
  const bodyStart = descriptors.length > 0 ? Math.ceil(headerEnd / 8) * 8 : headerEnd;
  const frame = new Uint8Array(bodyStart + bodyBytes);
  frame.set([0x54, 0x4e, 0x44, 0x4d, 1], 0);
  new DataView(frame.buffer).setUint32(8, json.byteLength, true);
  frame.set(json, FRAME_PREFIX_BYTES);
  return frame;
}

describe('docs/protocol.md', () => {
  it('shows the exact bytes the encoder produces for ping', () => {
    expect(doc).toContain(hexDump(encodeMessage({ type: 'ping', nonce: 1 })));
  });

  it('shows the exact bytes the encoder produces for a small infer', () => {
    const frame = encodeMessage({
      type: 'infer',
      id: 'j1',
      model: 'tiny',
      inputs: { x: { dtype: 'float32', dims: [2], data: new Float32Array([1, 2]) } },
    });
    expect(doc).toContain(hexDump(frame));
  });

  for (const type of [...CLIENT_MESSAGE_TYPES, ...SERVER_MESSAGE_TYPES]) {
    it(`documents ${type} with an example that decodes`, () => {
      const header = exampleFor(type) as Record<string, unknown>;
      expect(header.type).toBe(type);
      expect(decodeMessage(frameOf(header)).type).toBe(type);
    });
  }
});
