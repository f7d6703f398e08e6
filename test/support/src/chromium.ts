// Real Chromium for browser tests: Debian's `chromium` found on PATH (or TANDEM_CHROMIUM), driven
// by playwright-core, with the flags this environment needs (headless, no sandbox as root, WebGPU
// enabled, no background networking). Pages must be served from http://localhost for WebGPU.

import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Browser } from 'playwright-core';

/** The Chromium executable: TANDEM_CHROMIUM, else the first `chromium` on PATH. */
export function chromiumPath(): string {
  const override = process.env.TANDEM_CHROMIUM;
  if (override !== undefined && override !== '') return override;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of ['chromium', 'chromium-browser']) {
      const candidate = join(dir, name);
      try {
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not here
      }
    }
  }
  throw new Error(
    'Chromium not found: install Debian\'s "chromium" package or set TANDEM_CHROMIUM',
  );
}

/** Options for {@link launchChromium}. */
export interface LaunchOptions {
  /**
   * Enable WebGPU (a software adapter where there is no GPU). Off, the browser has no WebGPU
   * adapter at all, like most browsers on Linux today. @default true
   */
  readonly webgpu?: boolean;
}

/** Launches headless Chromium, with WebGPU enabled unless asked otherwise. */
export async function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  // Loaded here, not at the top: playwright-core is large, and most users of this package (the
  // server benches among them) never start a browser; their heap, and so their GC pauses, stay
  // small.
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--no-sandbox',
      ...(options.webgpu === false ? ['--disable-features=WebGPU'] : ['--enable-unsafe-webgpu']),
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}
