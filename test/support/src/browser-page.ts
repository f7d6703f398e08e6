// Builds the browser test page (test/browser-page) with Vite into a temporary folder, for a Tandem
// server to serve as static files (cross-origin isolated) to real Chromium.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Vite from 'vite';

/** The page's source folder. */
export const BROWSER_PAGE_ROOT = fileURLToPath(new URL('../../browser-page', import.meta.url));

/** Options of {@link buildBrowserPage}. */
export interface BrowserPageOptions {
  /**
   * How Vite bundles the page's workers. `'iife'` is Vite's own default (classic workers), what
   * an app gets with no `worker` setting. @default 'es'
   */
  readonly workerFormat?: 'es' | 'iife';
}

/** Builds the page; returns its folder and a function that removes it. */
export async function buildBrowserPage(
  options: BrowserPageOptions = {},
): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-browser-page-'));
  const { build } = await loadVite();
  await build({
    root: BROWSER_PAGE_ROOT,
    logLevel: 'error',
    build: { outDir: dir, emptyOutDir: true, target: 'es2022' },
    worker: { format: options.workerFormat ?? 'es' },
  });
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** The demo app's Vite config (demo/vite.config.ts). */
export const DEMO_CONFIG = fileURLToPath(new URL('../../../demo/vite.config.ts', import.meta.url));

/** Builds the demo app as `npm start` does, into a temporary folder. */
export async function buildDemo(): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'tandem-demo-'));
  const { build } = await loadVite();
  await build({
    configFile: DEMO_CONFIG,
    logLevel: 'error',
    build: { outDir: dir, emptyOutDir: true },
  });
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Vite, loaded on first use rather than with this package: it is large, and most users of the
 * package (the server benches among them) never build a page; their heap stays small.
 */
function loadVite(): Promise<typeof Vite> {
  return import('vite');
}
