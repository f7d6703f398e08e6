// Loading Node built-ins from code that is also bundled for browsers.

/**
 * Imports a Node built-in by a name only known at run time, so browser bundlers (Vite, webpack)
 * neither try to bundle it nor warn that it was left out of the page's build.
 */
export async function nodeBuiltin<T>(name: string): Promise<T> {
  return (await import(/* @vite-ignore */ /* webpackIgnore: true */ name)) as T;
}
