// Model versions and which one is the latest. A request that names no version runs the server's
// latest, and a client that estimates such a request must pick the same one: both sides compare
// versions with this one function.

/**
 * Compares two model versions for sorting: numerically when both are integers ("9" < "10"), else
 * naturally ("v2" < "v10"). Negative when `a` comes first, positive when `b` does.
 */
export function compareVersions(a: string, b: string): number {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return Number(a) - Number(b);
  return a.localeCompare(b, 'en', { numeric: true });
}
