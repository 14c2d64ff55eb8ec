import { existsSync } from 'node:fs';
import puppeteer, { type Browser, type ElementHandle, type Page } from 'puppeteer-core';
import { CHROMIUM_PATH } from '../../stack/components/chromium.ts';

/** Debian's headless Chromium; fails (never skips) when it is not installed, and says how to get it. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`${CHROMIUM_PATH} is missing: install it with \`npm run stack -- up chromium\` (npm test does this), i.e. apt-get install chromium`);
  }
  return puppeteer.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ['--no-sandbox', '--disable-gpu', '--font-render-hinting=none'] });
}

/**
 * Share of an element's screenshot pixels that are not background (near-white): the PNG from
 * Chromium's own screenshot, decoded by the same browser on a canvas.
 */
export async function inkShare(page: Page, el: ElementHandle): Promise<number> {
  const png = await el.screenshot({ encoding: 'base64', type: 'png' });
  // A string, because the project compiles without the DOM library; this runs in the page.
  const decode = `(async (b64) => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + b64;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width;
    c.height = img.height;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    let ink = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i] < 235 || px[i + 1] < 235 || px[i + 2] < 235) ink++;
    return ink / (px.length / 4);
  })(${JSON.stringify(png)})`;
  return (await page.evaluate(decode)) as number;
}
