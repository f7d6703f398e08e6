// The contract compiles with no ambient DOM or Node types, yet needs UTF-8 text coding, which every
// runtime Tandem supports (browsers, workers, Node 20+) provides as globals. Only what we use.

declare class TextEncoder {
  encode(input?: string): Uint8Array;
  encodeInto(source: string, destination: Uint8Array): { read: number; written: number };
}

declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean });
  decode(input?: Uint8Array): string;
}
