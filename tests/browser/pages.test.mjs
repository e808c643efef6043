// Socle's pages in a real browser (Debian's headless Chromium driven by playwright-core):
// every page passes axe-core with no violation (WCAG 2.1 A/AA and best practices), fits
// a 320 px screen without horizontal scrolling, starts with a working skip link for
// keyboard users, and raises no Content-Security-Policy violation.
//
// Run by scripts/browser-test, which starts `socle demo` and sets SOCLE_URL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { BASE, SHOTS, launch, audit, checkPage, tabTo as tab } from './helpers.mjs';

const PAGES = [
  { name: 'accueil', path: '/', status: 200 },
  { name: 'documentation-api', path: '/api/docs', status: 200 },
  { name: 'journal', path: '/journal', status: 200 },
  { name: 'etat', path: '/etat', status: 200 },
  { name: 'catalogue', path: '/catalogue', status: 200 },
  { name: 'catalogue-recherche', path: '/catalogue?q=cantine&theme=Famille', status: 200 },
  { name: 'catalogue-api', path: '/catalogue/quotient-familial', status: 200 },
  { name: 'dictionnaire', path: '/catalogue/donnees', status: 200 },
  { name: 'page-absente', path: '/une-page-qui-n-existe-pas', status: 404 },
];
const WIDTHS = [320, 1280];

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

for (const p of PAGES) {
  for (const width of WIDTHS) {
    test(`${p.path} at ${width}px: axe-core, layout, keyboard`, async () => {
      // axe is injected as a script, which the strict CSP would refuse: bypass it here,
      // and check the CSP separately below.
      const context = await browser.newContext({ bypassCSP: true, viewport: { width, height: 900 }, locale: 'fr-FR' });
      const page = await context.newPage();
      const response = await page.goto(BASE + p.path, { waitUntil: 'networkidle' });
      assert.equal(response.status(), p.status);
      assert.equal(await page.getAttribute('html', 'lang'), 'fr');

      const violations = await audit(page);
      assert.deepEqual(violations, [], `axe-core violations on ${p.path} at ${width}px:\n${JSON.stringify(violations, null, 2)}`);

      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 0, `${p.path} scrolls horizontally by ${overflow}px at ${width}px`);

      // Keyboard: the first Tab reaches the skip link, which moves focus to the content.
      await page.keyboard.press('Tab');
      const first = await page.evaluate(() => document.activeElement?.textContent?.trim());
      assert.equal(first, 'Contenu');
      await page.keyboard.press('Enter');
      await page.waitForFunction(() => location.hash === '#contenu');

      // The "Menu" skip link leads to what is visible at this width: the navigation on a
      // large screen, the menu button on a small one (there the navigation is inside the
      // closed menu panel, and focus would land nowhere).
      await page.goto(BASE + p.path, { waitUntil: 'networkidle' });
      await page.keyboard.press('Tab');
      await page.keyboard.press('Tab');
      const second = await page.evaluate(() => document.activeElement?.textContent?.trim());
      assert.equal(second, 'Menu');
      await page.keyboard.press('Enter');
      const target = width < 992 ? '#bouton-menu' : '#navigation-principale';
      await page.waitForFunction(t => location.hash === t, target);
      const shown = await page.evaluate(t => {
        const r = document.querySelector(t).getBoundingClientRect();
        return r.width > 0 && r.height > 0;
      }, target);
      assert.ok(shown, `the Menu skip link leads to ${target}, hidden at ${width}px`);

      if (SHOTS) {
        mkdirSync(SHOTS, { recursive: true });
        await page.goto(BASE + p.path, { waitUntil: 'networkidle' });
        await page.screenshot({ path: `${SHOTS}/${p.name}-${width}.png`, fullPage: true });
      }
      await context.close();
    });
  }

  test(`${p.path}: no Content-Security-Policy violation, DSFR script running`, async () => {
    const context = await browser.newContext({ viewport: { width: 320, height: 900 } });
    const page = await context.newPage();
    const problems = [];
    page.on('console', m => { if (m.type() === 'error') problems.push(m.text()); });
    page.on('pageerror', e => problems.push(String(e)));
    await page.goto(BASE + p.path, { waitUntil: 'networkidle' });
    // The DSFR's JavaScript marks the document once it has started.
    await page.waitForFunction(() => document.documentElement.hasAttribute('data-fr-js'), null, { timeout: 5000 });
    const real = problems.filter(t => !t.includes('404 (Not Found)'));
    assert.deepEqual(real, [], `console errors on ${p.path}`);
    // The mobile menu opens by keyboard at 320 px.
    await page.focus('#bouton-menu');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#menu-principal.fr-modal--opened', { timeout: 3000 });
    await context.close();
  });
}

// The demonstration login, end to end in the browser and by keyboard only: the demo
// service sends the person to Socle, who chooses the demo identity provider, picks a
// fictitious person, consents, and comes back to the service with the identity. Every
// page on the way passes axe-core and fits the screen, at 320 and 1280 px.
for (const width of WIDTHS) {
  test(`demo login by keyboard at ${width}px: every page accessible, identity received`, async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width, height: 900 }, locale: 'fr-FR' });
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', e => problems.push(String(e)));
    const check = (name) => checkPage(page, name, width);
    // Focus an element by tabbing to it (never by clicking), then activate it.
    const tabTo = (selector) => tab(page, selector, 60);
    await page.goto(BASE + '/demo/fs/', { waitUntil: 'networkidle' });
    await check('demarche-accueil');
    await tabTo('a[href="/demo/fs/login"]');
    await Promise.all([page.waitForURL(/\/api\/v2\/interaction\//), page.keyboard.press('Enter')]);
    await check('choix-fournisseur');
    await tabTo('button[name="provider"][value="demo"]');
    await Promise.all([page.waitForURL(/\/demo\/fi\/authorize/), page.keyboard.press('Enter')]);
    await check('fournisseur-demo');
    await tabTo('input[name="login"]');
    await page.keyboard.press('ArrowDown'); // second person: Jean Martin
    assert.equal(await page.evaluate(() => document.activeElement.value), 'jean');
    await tabTo('button[value="login"]');
    await Promise.all([page.waitForURL(/\/consent$/), page.keyboard.press('Enter')]);
    await check('consentement');
    assert.ok((await page.textContent('main')).includes('Martin'));
    await tabTo('button[value="accept"]');
    await Promise.all([page.waitForURL(/\/demo\/fs\/callback/), page.keyboard.press('Enter')]);
    await check('demarche-identite');
    const main = await page.textContent('main');
    assert.ok(main.includes('Vous êtes connecté'), main);
    assert.ok(main.includes('Martin') && main.includes('69123') && main.includes('eidas2'), main);
    // The claims in words: the sex in French, dates as people write them.
    assert.ok(main.includes('masculin') && !/\bmale\b/.test(main), main);
    assert.ok(!/\b\d{4}-\d{2}-\d{2}\b/.test(main), `an ISO date: ${main}`);
    // And out again, through the identity provider's logout.
    await tabTo('a[href*="/api/v2/session/end"]');
    await Promise.all([page.waitForURL(/\/demo\/fs\/logged-out/), page.keyboard.press('Enter')]);
    assert.ok((await page.textContent('main')).includes('Vous êtes déconnecté'));
    assert.deepEqual(problems, []);
    await context.close();
  });
}

// A person who says no at the identity provider comes back to a page that says so, as
// information (not an error), with the way back to the service, which is told
// access_denied.
for (const width of WIDTHS) {
  test(`a refusal at the identity provider at ${width}px: "Connexion annulée", accessible, the way back`, async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width, height: 900 }, locale: 'fr-FR' });
    const page = await context.newPage();
    const tabTo = (selector) => tab(page, selector, 60);
    await page.goto(BASE + '/demo/fs/', { waitUntil: 'networkidle' });
    await tabTo('a[href="/demo/fs/login"]');
    await Promise.all([page.waitForURL(/\/api\/v2\/interaction\//), page.keyboard.press('Enter')]);
    await tabTo('button[name="provider"][value="demo"]');
    await Promise.all([page.waitForURL(/\/demo\/fi\/authorize/), page.keyboard.press('Enter')]);
    await tabTo('button[value="refuse"]');
    const [response] = await Promise.all([
      page.waitForResponse(r => r.url().includes('/api/v2/oidc-callback/demo')),
      page.keyboard.press('Enter'),
    ]);
    assert.equal(response.status(), 200);
    await page.waitForLoadState('networkidle');
    await checkPage(page, 'connexion-annulee', width);
    const main = await page.textContent('main');
    assert.ok(main.includes('Connexion annulée') && main.includes('vous n’êtes pas connecté'), main);
    await tabTo('a.fr-btn--secondary');
    await Promise.all([page.waitForURL(/\/demo\/fs\/callback/), page.keyboard.press('Enter')]);
    const back = await page.textContent('main');
    assert.ok(back.includes('access_denied'), back);
    await context.close();
  });
}

test('the choice and consent pages keep their CSP: forms may only lead to the providers and the service', async () => {
  const context = await browser.newContext({ viewport: { width: 320, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('console', m => { if (m.type() === 'error') problems.push(m.text()); });
  await page.goto(BASE + '/demo/fs/login', { waitUntil: 'networkidle' });
  await page.waitForFunction(() => document.documentElement.hasAttribute('data-fr-js'), null, { timeout: 5000 });
  await Promise.all([page.waitForURL(/\/demo\/fi\/authorize/), page.click('button[value="demo"]')]);
  await Promise.all([page.waitForURL(/\/consent$/), page.click('button[value="login"]')]);
  await Promise.all([page.waitForURL(/\/demo\/fs\/callback/), page.click('button[value="accept"]')]);
  assert.deepEqual(problems, [], 'no CSP violation on the way');
  await context.close();
});

// The back office ("Espace agent"): sign-in, the list, a request with its actions and
// history, the request form — for a provider's instructor and a service's developer.
for (const width of WIDTHS) {
  test(`espace agent at ${width}px: sign-in, list, request, form; axe-core on every page`, async () => {
    for (const [email, open] of [['instructeur@caf.demo', 'Aide aux vacances'], ['developpeur@demoville.demo', 'Tarification de la cantine']]) {
      const context = await browser.newContext({ bypassCSP: true, viewport: { width, height: 900 }, locale: 'fr-FR' });
      const page = await context.newPage();
      const check = (name) => checkPage(page, name, width);
      await page.goto(BASE + '/espace-agent', { waitUntil: 'networkidle' });
      assert.ok(page.url().endsWith('/espace-agent/connexion'));
      await check('agent-connexion');
      await page.fill('#email', email);
      await page.fill('#password', 'demonstration-socle');
      await Promise.all([page.waitForURL(/\/espace-agent$/), page.press('#password', 'Enter')]);
      await check('agent-demandes');
      await Promise.all([page.waitForURL(/\/espace-agent\/demandes\//), page.click(`text=${open}`)]);
      await check(email.startsWith('instructeur') ? 'agent-instruction' : 'agent-demande');
      const main = await page.textContent('main');
      assert.ok(main.includes('Historique'), main);
      if (email.startsWith('developpeur')) {
        await page.goto(BASE + '/espace-agent/demandes/nouvelle?api=quotient-familial', { waitUntil: 'networkidle' });
        await check('agent-formulaire');
      }
      await context.close();
    }
  });
}

// The partner space (issue 31): a service's developer asks for a login integration,
// the platform's instructor validates it, the developer gets the sandbox client's
// secret once, asks for production, which is validated in turn — every page through
// axe-core at 320 px (and 1280 px).
for (const width of WIDTHS) {
  test(`partner space at ${width}px: request, validation, sandbox client, production client`, async () => {
    const title = `Portail famille ${width}-${Date.now()}`;
    const session = async (email) => {
      const context = await browser.newContext({ bypassCSP: true, viewport: { width, height: 900 }, locale: 'fr-FR' });
      const page = await context.newPage();
      await page.goto(BASE + '/espace-agent/connexion', { waitUntil: 'networkidle' });
      await page.fill('#email', email);
      await page.fill('#password', 'demonstration-socle');
      await Promise.all([page.waitForURL(/\/espace-agent$/), page.press('#password', 'Enter')]);
      return { context, page };
    };
    const check = (page, name) => checkPage(page, name, width);
    const open = async (page) => {
      await page.goto(BASE + '/espace-agent', { waitUntil: 'networkidle' });
      await Promise.all([page.waitForURL(/\/espace-agent\/demandes\//), page.click(`text=${title} >> nth=0`)]);
    };
    const submit = async (page) => {
      await Promise.all([page.waitForLoadState('networkidle'), page.click('button[value=submit]')]);
      assert.ok((await page.textContent('main')).includes('Soumise'), await page.textContent('main'));
    };
    const validate = async (name) => {
      const { context, page } = await session('partenaires@plateforme.demo');
      await page.goto(BASE + '/espace-agent', { waitUntil: 'networkidle' });
      await Promise.all([page.waitForURL(/\/espace-agent\/demandes\//), page.click(`tr:has-text("Soumise") >> text=${title}`)]);
      await check(page, name);
      await Promise.all([page.waitForLoadState('networkidle'), page.click('button[value=validate]')]);
      assert.ok((await page.textContent('main')).includes('Validée'));
      await context.close();
    };

    // The developer's request.
    const dev = await session('developpeur@demoville.demo');
    await Promise.all([page_wait(dev.page, /\/integrations\/nouvelle$/), dev.page.click('text=demandez une intégration')]);
    await check(dev.page, 'partenaires-formulaire');
    const fill = async (id, value) => dev.page.fill(`#${id}`, value);
    await fill('title', title);
    await fill('service_url', 'https://famille.demoville.example.fr');
    await fill('purpose', 'Identifier les familles qui inscrivent leurs enfants à la cantine.');
    await fill('legal_nature', 'mission d’intérêt public');
    await fill('legal_text', 'Code de l’éducation, L. 551-1');
    await dev.page.click('label[for=scope-identite_pivot]');
    await fill('justification_identite_pivot', 'Rattacher l’inscription au bon enfant.');
    await fill('redirect_uris', 'http://localhost:8080/callback');
    for (const [who, name] of [['controller', 'Maire'], ['dpo', 'DPD'], ['tech', 'DSI']]) {
      await fill(`${who}_name`, name);
      await fill(`${who}_email`, `${who}@demoville.example.fr`);
    }
    await Promise.all([page_wait(dev.page, /\/espace-agent\/demandes\/[^/]+$/), dev.page.click('text=Enregistrer le brouillon')]);
    await check(dev.page, 'partenaires-brouillon');
    await submit(dev.page);

    // The platform's instructor validates: a sandbox client.
    await validate('partenaires-instruction');
    await open(dev.page);
    await check(dev.page, 'partenaires-client');
    assert.ok((await dev.page.textContent('main')).includes('Bac à sable'));
    await Promise.all([dev.page.waitForLoadState('networkidle'), dev.page.click('text=Obtenir le secret du client')]);
    const shown = await dev.page.textContent('main');
    assert.match(shown, /secret : \S{20,}/, 'the secret is shown once');
    await check(dev.page, 'partenaires-secret');

    // Production: a second request, with the accreditation, validated in turn.
    await Promise.all([page_wait(dev.page, /\/modifier$/), dev.page.click('text=Demander le passage en production')]);
    await check(dev.page, 'partenaires-production');
    await fill('acc_authority', 'Maire de Démoville');
    await fill('acc_start', '2026-01-01');
    await fill('acc_end', '2029-01-01');
    await Promise.all([page_wait(dev.page, /\/espace-agent\/demandes\/[^/]+$/), dev.page.click('text=Enregistrer le brouillon')]);
    await submit(dev.page);
    await validate('partenaires-instruction-production');
    await dev.page.goto(BASE + '/espace-agent', { waitUntil: 'networkidle' });
    const list = await dev.page.textContent('main');
    assert.equal(list.split(title).length - 1, 2, 'the sandbox and the production requests');
    await dev.context.close();
  });
}

function page_wait(page, re) {
  return page.waitForURL(re);
}
