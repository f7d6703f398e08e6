// Renders the demo's sample images (demo/public/samples/*.png) from the HTML in sample-specs.ts
// with real Chromium, so the pictures hold real font rendering and the expected text is known
// exactly. No network is needed: fonts are the system's (DejaVu, Liberation).
//
//   npx tsx demo/scripts/make-samples.ts
//
// Rerun after changing sample-specs.ts and commit the PNGs; the OCR test reads them.

import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { launchChromium } from '../../test/support/src/chromium.js';
import { SAMPLES } from './sample-specs.js';

const outDir = fileURLToPath(new URL('../public/samples/', import.meta.url));
mkdirSync(outDir, { recursive: true });

const browser = await launchChromium();
try {
  for (const sample of SAMPLES) {
    const page = await browser.newPage({
      viewport: { width: sample.width + 40, height: sample.height + 40 },
      deviceScaleFactor: 1,
    });
    await page.setContent(
      `<!doctype html><html><body style="margin:0">${sample.html}</body></html>`,
    );
    // Screenshots taken before web fonts settle would use a fallback face.
    await page.evaluate(() => document.fonts.ready.then(() => undefined));
    const path = `${outDir}${sample.file}`;
    await page.locator('#sample').screenshot({ path, animations: 'disabled' });
    await page.close();
    console.log(`wrote ${path}`);
  }
} finally {
  await browser.close();
}
