// The citizen space in a real browser (issue: citizen space), at 320 and 1280 px, with
// axe-core on every page visited: a demo person logs in at the demonstration service,
// which obtains her family quotient through the gateway but not her tax income (that
// rests on her consent); she follows the service's request to "Mon espace" (logged in
// by single sign-on), authorises it; the service now obtains it; in "Mes données" she sees the exchanges
// and verifies a proof in the page, by keyboard; she withdraws the authorisation in
// "Mes autorisations", by keyboard — and the service's next call is refused.
//
// Run by scripts/browser-test (SQLite, and again on PostgreSQL), which sets SOCLE_URL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BASE, launch, checkPage, tabTo as tab } from './helpers.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

// Goes through the platform's login pages (choice, demo provider, consent) until `done`.
async function throughLogin(page, done, check, person = 'marie') {
  for (let i = 0; i < 8 && !done.test(page.url()); i++) {
    const url = page.url();
    if (/\/api\/v2\/interaction\/[^/]+$/.test(url)) {
      await check('espace-choix');
      await Promise.all([page.waitForURL(u => !/\/interaction\/[^/]+$/.test(u.toString())), page.click('button[value="demo"]')]);
    } else if (/\/demo\/fi\/authorize/.test(url)) {
      await page.check(`input[name="login"][value="${person}"]`, { force: true });
      await Promise.all([page.waitForURL(u => !/\/demo\/fi\//.test(u.toString())), page.click('button[value="login"]')]);
    } else if (/\/consent$/.test(url)) {
      await Promise.all([page.waitForURL(u => !/\/consent$/.test(u.toString())), page.click('button[value="accept"]')]);
    } else {
      await page.waitForLoadState('networkidle');
    }
  }
  assert.ok(done.test(page.url()), `login ended at ${page.url()}`);
}

async function serviceData(page, check, person = 'marie') {
  await page.goto(BASE + '/demo/fs/login');
  await throughLogin(page, /\/demo\/fs\/callback/, check, person);
  await page.waitForLoadState('networkidle');
  return page.textContent('main');
}

// One person per width, so that the two runs do not share consents.
for (const [width, person, income] of [[320, 'marie', '24310'], [1280, 'lucas', '27900']]) {
  test(`citizen space at ${width}px: exchanges with a verified proof, consent granted then withdrawn, the service refused`, async () => {
    const context = await browser.newContext({ bypassCSP: true, viewport: { width, height: 900 }, locale: 'fr-FR' });
    const page = await context.newPage();
    const problems = [];
    page.on('pageerror', e => problems.push(String(e)));
    const check = (name) => checkPage(page, name, width);
    const tabTo = (selector) => tab(page, selector);

    // The service obtains the family quotient, not the tax income.
    let main = await serviceData(page, check, person);
    assert.ok(main.includes('Quotient familial'), main);
    assert.ok(main.includes('votre accord est nécessaire'), main);
    await check('demarche-donnees');

    // Its request, in "Mon espace": logged in by single sign-on (she logged in to the
    // service through the platform in this browser: no provider is asked again),
    // preview, authorise.
    await Promise.all([page.waitForURL(/\/mon-espace\/connexion|\/api\/v2\/|\/mon-espace\/autorisations\/demande/), page.click('a[href*="/mon-espace/autorisations/demande"]')]);
    await throughLogin(page, /\/mon-espace\/autorisations\/demande/, check, person);
    await check('espace-demande');
    main = await page.textContent('main');
    assert.ok(main.includes('Revenu fiscal de référence') && main.includes('Mairie de Démoville'), main);
    await Promise.all([page.waitForURL(/\/mon-espace\/autorisations\?fait=accord&recu=/), page.click('button[value="accorder"]')]);
    assert.ok((await page.textContent('main')).includes('Autorisation accordée'));
    await check('espace-autorisations');

    // The service now obtains it.
    main = await serviceData(page, check, person);
    assert.ok(main.includes(income), main);

    // "Mes données": the exchanges, and a proof verified in the page, by keyboard.
    await page.goto(BASE + '/mon-espace/', { waitUntil: 'networkidle' });
    await check('espace-accueil');
    await page.goto(BASE + '/mon-espace/donnees', { waitUntil: 'networkidle' });
    for (let i = 0; i < 20 && !(await page.$('button.socle-verify')); i++) {
      await page.waitForTimeout(200);
      await page.reload({ waitUntil: 'networkidle' });
    }
    main = await page.textContent('main');
    assert.ok(main.includes('Mairie de Démoville a obtenu'), main);
    assert.ok(main.includes('Quotient familial CAF') && main.includes('Revenu fiscal de référence'), main);
    await check('espace-donnees');
    await tabTo('button.socle-verify');
    const result = await page.evaluate(() => document.activeElement.getAttribute('aria-describedby'));
    await page.keyboard.press('Enter');
    await page.waitForFunction((id) => !document.getElementById(id).textContent.includes('en cours') && document.getElementById(id).textContent !== '', result, { timeout: 5000 });
    const verdict = await page.textContent('#' + result);
    assert.ok(verdict.startsWith('Preuve vérifiée'), verdict);

    await page.goto(BASE + '/mon-espace/connexions', { waitUntil: 'networkidle' });
    assert.ok((await page.textContent('main')).includes('Démarche de démonstration'));
    await check('espace-connexions');

    // Withdraw, by keyboard; the service's next call is refused.
    await page.goto(BASE + '/mon-espace/autorisations', { waitUntil: 'networkidle' });
    await tabTo('form[action$="/retrait"] button');
    await Promise.all([page.waitForURL(/\/mon-espace\/autorisations\?fait=retrait&recu=/), page.keyboard.press('Enter')]);
    assert.ok((await page.textContent('main')).includes('Autorisation retirée'));
    await check('espace-retrait');
    main = await serviceData(page, check, person);
    assert.ok(main.includes('votre accord est nécessaire') && !main.includes(income), main);

    assert.deepEqual(problems, []);
    await context.close();
  });
}

test('the proof check runs under the strict CSP (no inline script), without console errors', async () => {
  const context = await browser.newContext({ viewport: { width: 320, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('console', m => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', e => problems.push(String(e)));
  await serviceData(page, async () => {}, 'fatou');
  await page.goto(BASE + '/mon-espace/donnees');
  await throughLogin(page, /\/mon-espace\/donnees/, async () => {}, 'fatou');
  for (let i = 0; i < 20 && !(await page.$('button.socle-verify')); i++) {
    await page.waitForTimeout(200);
    await page.reload({ waitUntil: 'networkidle' });
  }
  const id = await page.getAttribute('button.socle-verify', 'aria-describedby');
  await page.click('button.socle-verify');
  await page.waitForFunction((i) => !document.getElementById(i).textContent.includes('en cours') && document.getElementById(i).textContent !== '', id, { timeout: 5000 });
  const verdict = await page.textContent('#' + id);
  assert.ok(verdict.startsWith('Preuve vérifiée'), verdict);
  assert.deepEqual(problems, []);
  await context.close();
});

// Issue 32: the README's machine-to-machine call (the town hall asks the CAF for an
// allocataire's family quotient, without the person) reaches that person: logged in to
// "Mon espace", they see the exchange and verify its proof. (Allocataire 0000002,
// Jean, whom no other test logs in, so that the exchange shown can only be this one.)
test('a machine call about a person reaches that person: Mes données, with its proof', async () => {
  assert.ok(process.env.BROWSER_DEMO_FILE, 'BROWSER_DEMO_FILE names socle demo\'s demo.json');
  const demo = JSON.parse(readFileSync(process.env.BROWSER_DEMO_FILE, 'utf8'));
  const basic = Buffer.from(`${demo.client_id}:${demo.client_secret}`).toString('base64');
  const token = await fetch(demo.token_endpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials',
  }).then(r => r.json());
  assert.ok(token.access_token, JSON.stringify(token));
  const url = demo.example_call.url.replace('identifiant=0000001', 'identifiant=0000002');
  assert.notEqual(url, demo.example_call.url, url);
  const r = await fetch(url, { headers: { authorization: `Bearer ${token.access_token}` } });
  assert.equal(r.status, 200, await r.text());
  assert.equal(r.headers.get('socle-subject'), null, 'the provider\'s naming is not passed on');

  const context = await browser.newContext({ bypassCSP: true, viewport: { width: 320, height: 900 }, locale: 'fr-FR' });
  const page = await context.newPage();
  const check = (name) => checkPage(page, name, 320);
  await page.goto(BASE + '/mon-espace/donnees');
  await throughLogin(page, /\/mon-espace\/donnees/, check, 'jean');
  for (let i = 0; i < 20 && !(await page.$('button.socle-verify')); i++) {
    await page.waitForTimeout(200);
    await page.reload({ waitUntil: 'networkidle' });
  }
  const main = await page.textContent('main');
  assert.ok(main.includes('Mairie de Démoville a obtenu') && main.includes('Quotient familial'), main);
  await check('espace-donnees-appel-machine');
  const id = await page.getAttribute('button.socle-verify', 'aria-describedby');
  await page.click('button.socle-verify');
  await page.waitForFunction((i) => !document.getElementById(i).textContent.includes('en cours') && document.getElementById(i).textContent !== '', id, { timeout: 5000 });
  assert.ok((await page.textContent('#' + id)).startsWith('Preuve vérifiée'));

  // "Je conteste cet accès": the form, by keyboard, then the contest followed.
  await Promise.all([page.waitForURL(/\/contester$/), page.click('a[href$="/contester"] >> nth=0')]);
  await check('espace-contester');
  await page.click('label[for="raison-no_procedure"]');
  await page.fill('#message', 'Je n’ai fait aucune démarche auprès de la mairie.');
  await Promise.all([page.waitForURL(/\/mon-espace\/contestations\?fait=recue/), page.click('button[type=submit]:has-text("Envoyer")')]);
  let main2 = await page.textContent('main');
  assert.ok(main2.includes('Reçue') && main2.includes('aucune démarche'), main2);
  await check('espace-contestations');
  await context.close();

  // The provider's instructor answers from the Espace agent; the person reads it.
  const agent = await browser.newContext({ bypassCSP: true, viewport: { width: 320, height: 900 }, locale: 'fr-FR' });
  const ap = await agent.newPage();
  await ap.goto(BASE + '/espace-agent/connexion', { waitUntil: 'networkidle' });
  await ap.fill('#email', 'instructeur@caf.demo');
  await ap.fill('#password', 'demonstration-socle');
  await Promise.all([ap.waitForURL(/\/espace-agent$/), ap.press('#password', 'Enter')]);
  await ap.goto(BASE + '/espace-agent/contestations', { waitUntil: 'networkidle' });
  await checkPage(ap, 'agent-contestations', 320);
  await Promise.all([ap.waitForURL(/\/espace-agent\/contestations\/.+/), ap.click('a[href^="/espace-agent/contestations/"] >> nth=0')]);
  await checkPage(ap, 'agent-contestation', 320);
  await ap.fill('#reponse', 'Erreur de dossier : l’appel a été signalé à la mairie.');
  await Promise.all([ap.waitForLoadState('networkidle'), ap.click('button[value="repondre"]')]);
  assert.ok((await ap.textContent('main')).includes('Close'));
  await agent.close();
});
