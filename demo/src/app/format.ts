// Number formatting for the demo's panel: durations people can read at a glance.

/** "—" for a stage that did not happen, "12 ms" under a second, "1.4 s" above. */
export function formatMs(ms: number): string {
  if (ms <= 0) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
}

/** "this device" / "server", as the panel and the progress element say it. */
export function sideName(where: 'local' | 'remote'): string {
  return where === 'local' ? 'This device' : 'Server';
}
