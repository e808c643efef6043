// Shared by the browser tests: launching Debian's Chromium, the axe-core audit with the
// 320 px layout check (and optional screenshots), moving focus by keyboard only.
import assert from 'node:assert/strict';
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const BASE = process.env.SOCLE_URL;
export const SHOTS = process.env.SOCLE_SCREENSHOTS; // a directory, or unset
assert.ok(BASE, 'SOCLE_URL must point at a running Socle');

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

export async function audit(page) {
  await page.addScriptTag({ content: AXE });
  return page.evaluate(async () => {
    const r = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
    });
    return r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ')) }));
  });
}

// axe-core, no horizontal scrolling and, with SOCLE_SCREENSHOTS, a screenshot.
export async function checkPage(page, name, width) {
  await page.waitForLoadState('networkidle');
  assert.equal(await page.getAttribute('html', 'lang'), 'fr');
  const violations = await audit(page);
  assert.deepEqual(violations, [], `axe-core violations on ${name} at ${width}px:\n${JSON.stringify(violations, null, 2)}`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${name} scrolls horizontally by ${overflow}px at ${width}px`);
  if (SHOTS) {
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: `${SHOTS}/${name}-${width}.png`, fullPage: true });
  }
}

// Focuses an element by tabbing to it (never by clicking).
export async function tabTo(page, selector, max = 120) {
  for (let i = 0; i < max; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate((s) => document.activeElement?.matches(s), selector)) return;
  }
  throw new Error(`${selector} cannot be reached by keyboard`);
}
