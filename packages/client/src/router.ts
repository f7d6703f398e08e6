// Placement decisions: which side to try first for a call, whether the other side may take over
// when the first fails, and a sentence saying why. Pure functions over estimates, so the policy is
// testable without a browser or a server.

import {
  LOCAL_BACKENDS,
  type ErrorCode,
  type LocalBackend,
  type ModelManifest,
  type Placement,
  type Where,
} from '@tandem/shared';
import type { RuntimeEstimate } from './runtime.js';

/** The router's decision for one call. */
export interface PlacementDecision {
  /** Sides to try, in order; the second (if any) is the fallback. */
  readonly order: readonly Where[];
  /** Why, in words, for RunResult.reason and logs. */
  readonly reason: string;
}

/**
 * Error codes after which the other side may take the job: the failure was about this side (its
 * network, device, memory, backend, queue or model copy), not about the call itself. Bad inputs,
 * cancellation and deadlines would fail or be wrong on the other side too.
 */
export const FALLBACK_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'E_NETWORK',
  'E_BUSY',
  'E_SHUTTING_DOWN',
  'E_QUEUE_UNAVAILABLE',
  'E_RATE_LIMITED',
  'E_UNAUTHORIZED',
  'E_FORBIDDEN_ORIGIN',
  'E_MODEL_NOT_FOUND',
  // A remote whose URL points at the wrong place (another path, another kind of server).
  'E_ROUTE_NOT_FOUND',
  'E_MODEL_LOAD_FAILED',
  'E_PROTOCOL_VERSION',
  'E_RUNTIME',
  'E_NO_BACKEND',
  'E_UNSUPPORTED_OP',
  'E_DEVICE_LOST',
  'E_OUT_OF_MEMORY',
  'E_DOWNLOAD',
  'E_INTEGRITY',
  'E_PAYLOAD_TOO_LARGE',
  'E_INTERNAL',
]);

/** True when a placement lets the other side take over after a failure. */
export function allowsFallback(placement: Placement): boolean {
  return placement !== 'local-only' && placement !== 'remote-only';
}

/** True when `have` is at least the `need`ed backend (wasm < webgpu). */
export function meetsBackend(
  have: LocalBackend | undefined,
  need: LocalBackend | undefined,
): boolean {
  if (need === undefined) return have !== undefined;
  if (have === undefined) return false;
  return LOCAL_BACKENDS.indexOf(have) >= LOCAL_BACKENDS.indexOf(need);
}

/**
 * The side a call skipped because its estimate failed (it carries an error code: an unreachable
 * server, a local runtime that would not start) when that counts as a fallback from it to `ran`:
 * the placement would have tried it first. Under `prefer-local` / `prefer-remote` only the
 * preferred side counts (the other one was never needed); under `auto` either does (auto weighs
 * both, and the failure decided between them). A side that is merely unavailable (no model file,
 * no such model on the server) did not fail, and the `-only` placements never fall back.
 */
export function skippedFallbackSide(
  placement: Placement,
  ran: Where,
  local: RuntimeEstimate,
  remote: RuntimeEstimate,
): Where | undefined {
  if (!allowsFallback(placement)) return undefined;
  const skipped = other(ran);
  const estimate = skipped === 'local' ? local : remote;
  if (estimate.available || estimate.code === undefined) return undefined;
  return placement === 'auto' || placement === `prefer-${skipped}` ? skipped : undefined;
}

function other(side: Where): Where {
  return side === 'local' ? 'remote' : 'local';
}

/**
 * Which side lacks a measured estimate, in words: "no estimates yet" would be untrue once one
 * side has run (a device that ran the model locally, a server it has not been sent to).
 */
function notMeasured(local: RuntimeEstimate, remote: RuntimeEstimate): string {
  if (local.ms === undefined && remote.ms === undefined) return 'no estimates yet';
  return local.ms === undefined
    ? `local not measured yet; remote ~${Math.round(remote.ms ?? 0)} ms`
    : `remote not measured yet; local ~${Math.round(local.ms)} ms`;
}

function describe(side: Where, estimate: RuntimeEstimate): string {
  return estimate.ms === undefined
    ? `${side} (no estimate yet)`
    : `${side} ~${Math.round(estimate.ms)} ms`;
}

/**
 * Decides the order to try the two sides in.
 * - `local-only` / `remote-only`: that side alone.
 * - `prefer-local` / `prefer-remote`: that side, then the other (when available).
 * - `auto`: a side that is unavailable (or lacks the model's minimum backend) is skipped; else the
 *   lower measured estimate goes first (local = download if not cached + compile + run; remote =
 *   round trip + the server's ETA, cold start included); without estimates the manifest's
 *   `prefer` hint decides, then local (the device is free and private). A side measured only in
 *   part (`atLeastMs`: a download at the measured bandwidth, say) that already takes longer than
 *   the other side's whole estimate goes second. A server that refused the model E_BUSY goes
 *   second until the `retryAfterMs` it gave has passed.
 */
export function decidePlacement(
  placement: Placement,
  manifest: ModelManifest,
  local: RuntimeEstimate,
  remote: RuntimeEstimate,
): PlacementDecision {
  switch (placement) {
    case 'local-only':
      return { order: ['local'], reason: 'placement local-only' };
    case 'remote-only':
      return { order: ['remote'], reason: 'placement remote-only' };
    case 'prefer-local':
    case 'prefer-remote': {
      const first: Where = placement === 'prefer-local' ? 'local' : 'remote';
      const firstEstimate = first === 'local' ? local : remote;
      const secondEstimate = first === 'local' ? remote : local;
      if (!firstEstimate.available && secondEstimate.available) {
        return {
          order: [other(first), first],
          reason: `${placement}, but ${first} is unavailable: ${firstEstimate.reason}`,
        };
      }
      return {
        order: secondEstimate.available ? [first, other(first)] : [first],
        reason: `placement ${placement}`,
      };
    }
    case 'auto': {
      if (!local.available && !remote.available) {
        return {
          order: ['local', 'remote'],
          reason: `auto: neither side is available (local: ${local.reason}; remote: ${remote.reason})`,
        };
      }
      if (!local.available)
        return { order: ['remote'], reason: `auto: local unavailable (${local.reason})` };
      if (!remote.available)
        return { order: ['local'], reason: `auto: remote unavailable (${remote.reason})` };
      // The server refused this model E_BUSY and asked for time: asking again now would only
      // cost a round trip for the same answer. It stays the fallback.
      if (remote.busyForMs !== undefined && remote.busyForMs > 0) {
        return {
          order: ['local', 'remote'],
          reason: `auto: the server is busy with this model for ~${Math.round(remote.busyForMs)} ms more (E_BUSY)`,
        };
      }
      if (local.ms !== undefined && remote.ms !== undefined) {
        const first: Where = local.ms <= remote.ms ? 'local' : 'remote';
        const [a, b] = first === 'local' ? [local, remote] : [remote, local];
        return {
          order: [first, other(first)],
          reason: `auto: ${describe(first, a)} vs ${describe(other(first), b)}`,
        };
      }
      // One side measured, the other not yet, but what is known of the other (a download at the
      // measured bandwidth) already takes longer: a model too large for this device goes to a
      // server that answers sooner, rather than waiting for a measured run that never comes.
      for (const [fast, slow] of [
        ['local', 'remote'],
        ['remote', 'local'],
      ] as const) {
        const fastMs = (fast === 'local' ? local : remote).ms;
        const slowAtLeast = (slow === 'local' ? local : remote).atLeastMs;
        if (fastMs !== undefined && slowAtLeast !== undefined && slowAtLeast > fastMs) {
          return {
            order: [fast, slow],
            reason: `auto: ${fast} ~${Math.round(fastMs)} ms vs ${slow} at least ~${Math.round(slowAtLeast)} ms (${slow === 'local' ? local.reason : remote.reason})`,
          };
        }
      }
      const unmeasured = notMeasured(local, remote);
      const hinted = manifest.placement?.prefer;
      if (hinted !== undefined)
        return {
          order: [hinted, other(hinted)],
          reason: `auto: model prefers ${hinted} (${unmeasured})`,
        };
      return {
        order: ['local', 'remote'],
        reason: `auto: ${unmeasured}, trying this device first`,
      };
    }
  }
}
