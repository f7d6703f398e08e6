// CORS for the HTTP routes, from the same Origin allowlist as the WebSocket upgrade (`origins`):
// pages are often served from another origin than the server, and without these headers a browser
// refuses them manifests, model files, /v1 and the OIP v2 routes. An allowed origin gets its own
// origin back (never `*`, so the answer holds for that page only) with `Vary: Origin`; a foreign
// one gets no CORS headers, which is how a browser is told no. Requests without an Origin (curl,
// Triton and KServe clients, same-origin loads) are served as before: CORS only binds browsers.

import fastifyCors from '@fastify/cors';
import { TandemError } from '@tandem/shared';
import type { FastifyInstance } from 'fastify';

/**
 * Request headers a page may send: the key, JSON or binary OIP bodies (compressed ones too),
 * revalidation.
 */
const ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'content-encoding',
  'inference-header-content-length',
  'if-none-match',
];

/**
 * Response headers a page may read: a model file's ETag and length, when to retry, where an OIP
 * binary body's JSON header ends.
 */
const EXPOSED_HEADERS = [
  'etag',
  'content-length',
  'retry-after',
  'inference-header-content-length',
];

/**
 * How long a browser may reuse a preflight's answer, in seconds. Short, so that a changed
 * allowlist reaches pages soon after a restart; browsers cap it anyway (Chromium at 2 hours).
 */
const PREFLIGHT_MAX_AGE_S = 600;

/**
 * The allowlist as browsers send origins: each entry reduced to its origin (`https://App.example/`
 * is `https://app.example`, as an Origin header says it), so a trailing slash or a capital letter
 * does not shut every page out without a word; `*` anywhere means any origin (undefined). An
 * entry that is no http(s) URL is refused with E_INVALID_ARGUMENT.
 */
export function normalizeOrigins(
  origins: readonly string[] | undefined,
): readonly string[] | undefined {
  if (origins === undefined || origins.includes('*')) return undefined;
  return origins.map((entry) => {
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      url = new URL('invalid:');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new TandemError(
        'E_INVALID_ARGUMENT',
        `origins: "${entry}" is not a page origin such as https://app.example (or * for any)`,
      );
    return url.origin;
  });
}

/**
 * Whether a page at `origin` may use the server: any origin when there is no allowlist
 * (`origins` undefined), else only the ones listed, compared exactly.
 */
export function originAllowed(origins: readonly string[] | undefined, origin: string): boolean {
  return origins === undefined || origins.includes(origin);
}

/**
 * Registers CORS on `fastify` for every route registered after it: preflights from allowed
 * origins answer 204 with the methods, headers and max-age; other requests from them carry
 * `Access-Control-Allow-Origin` and the exposed headers.
 */
export async function registerCors(
  fastify: FastifyInstance,
  origins: readonly string[] | undefined,
): Promise<void> {
  await fastify.register(fastifyCors, {
    // false (no Origin, or a foreign one) adds no CORS headers and leaves a preflight to the 404
    // of an unknown route; true reflects the request's Origin.
    origin: (origin, callback) => {
      callback(null, origin !== undefined && originAllowed(origins, origin));
    },
    methods: ['GET', 'POST', 'HEAD', 'OPTIONS'],
    allowedHeaders: ALLOWED_HEADERS,
    exposedHeaders: EXPOSED_HEADERS,
    maxAge: PREFLIGHT_MAX_AGE_S,
  });
}
