// Model versions and which one is the latest. A request that names no version runs the server's
// latest, and a client that estimates such a request must pick the same one: both sides compare
// versions with this one function.

/**
 * Compares two model versions for sorting: numerically when both are integers ("9" < "10"), else
 * naturally ("v2" < "v10"). Negative when `a` comes first, positive when `b` does, 0 only when
 * they are the same string: names that read as the same number ("010" and "10") are ordered by
 * their code units, so both sides of the wire agree on one latest version.
 */
export function compareVersions(a: string, b: string): number {
  const order =
    /^\d+$/.test(a) && /^\d+$/.test(b)
      ? Number(a) - Number(b)
      : a.localeCompare(b, 'en', { numeric: true });
  if (order !== 0) return order;
  return a < b ? -1 : a > b ? 1 : 0;
}
