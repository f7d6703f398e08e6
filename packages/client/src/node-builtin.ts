// Node-only paths in code that is also bundled for browsers: telling Node apart, loading built-ins.

/**
 * Imports a Node built-in by a name only known at run time, so browser bundlers (Vite, webpack)
 * neither try to bundle it nor warn that it was left out of the page's build.
 */
export async function nodeBuiltin<T>(name: string): Promise<T> {
  return (await import(/* @vite-ignore */ /* webpackIgnore: true */ name)) as T;
}

/** True in Node (and runtimes that pass for it), false in a browser page or worker. */
export function isNodeRuntime(): boolean {
  return (
    typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions
      ?.node === 'string' && typeof (globalThis as { window?: unknown }).window === 'undefined'
  );
}
