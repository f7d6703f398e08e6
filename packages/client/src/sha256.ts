// SHA-256 in plain JavaScript (FIPS 180-4), for where Web Crypto is missing: crypto.subtle exists
// only in secure contexts, so a page served over plain http from a LAN or intranet host has none,
// and without this every model file it downloaded failed its check. Slower than Web Crypto, so
// used only in its absence (see sha256Hex in model-files.ts).

/** The first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
// prettier-ignore
const K = Uint32Array.of(
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
);

/** Words as a view, little-endian whatever the host: read by index with no undefined to rule out. */
function words(values: Uint32Array): DataView {
  const view = new DataView(new ArrayBuffer(values.byteLength));
  values.forEach((value, i) => view.setUint32(i * 4, value, true));
  return view;
}

const KV = words(K);

/** Lower-case hex SHA-256 of `bytes`. */
export function sha256(bytes: Uint8Array): string {
  const state = words(
    Uint32Array.of(
      0x6a09e667,
      0xbb67ae85,
      0x3c6ef372,
      0xa54ff53a,
      0x510e527f,
      0x9b05688c,
      0x1f83d9ab,
      0x5be0cd19,
    ),
  );
  const w = new DataView(new ArrayBuffer(64 * 4));
  const whole = bytes.byteLength - (bytes.byteLength % 64);
  // The input's whole blocks where they are (a model's weights can be gigabytes: no copy)...
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let offset = 0; offset < whole; offset += 64) compress(state, w, view, offset);
  // ...then the rest, padded: a 1 bit, zeros, and the length in bits as 64 bits big-endian.
  const tail = new Uint8Array(bytes.byteLength % 64 < 56 ? 64 : 128);
  tail.set(bytes.subarray(whole));
  tail[bytes.byteLength - whole] = 0x80;
  const tailView = new DataView(tail.buffer);
  const bits = bytes.byteLength * 8;
  tailView.setUint32(tail.byteLength - 8, Math.floor(bits / 2 ** 32));
  tailView.setUint32(tail.byteLength - 4, bits >>> 0);
  for (let offset = 0; offset < tail.byteLength; offset += 64) compress(state, w, tailView, offset);
  let hex = '';
  for (let i = 0; i < 8; i++)
    hex += state
      .getUint32(i * 4, true)
      .toString(16)
      .padStart(8, '0');
  return hex;
}

/**
 * One 64-byte block of `view` at `offset` into the state (eight little-endian words), with `w`
 * as the message schedule's room.
 */
function compress(state: DataView, w: DataView, view: DataView, offset: number): void {
  for (let i = 0; i < 16; i++) w.setUint32(i * 4, view.getUint32(offset + i * 4));
  for (let i = 16; i < 64; i++) {
    const w15 = w.getUint32((i - 15) * 4);
    const w2 = w.getUint32((i - 2) * 4);
    const s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >>> 3);
    const s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >>> 10);
    w.setUint32(i * 4, (w.getUint32((i - 16) * 4) + s0 + w.getUint32((i - 7) * 4) + s1) | 0);
  }
  let a = state.getUint32(0, true);
  let b = state.getUint32(4, true);
  let c = state.getUint32(8, true);
  let d = state.getUint32(12, true);
  let e = state.getUint32(16, true);
  let f = state.getUint32(20, true);
  let g = state.getUint32(24, true);
  let h = state.getUint32(28, true);
  for (let i = 0; i < 64; i++) {
    const s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
    const choice = (e & f) ^ (~e & g);
    const t1 = (h + s1 + choice + KV.getUint32(i * 4, true) + w.getUint32(i * 4)) | 0;
    const s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
    const majority = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (s0 + majority) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  const add = (index: number, value: number): void =>
    state.setUint32(index * 4, (state.getUint32(index * 4, true) + value) | 0, true);
  add(0, a);
  add(1, b);
  add(2, c);
  add(3, d);
  add(4, e);
  add(5, f);
  add(6, g);
  add(7, h);
}

function rotr(value: number, bits: number): number {
  return (value >>> bits) | (value << (32 - bits));
}
