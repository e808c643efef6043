// The scripted client of scripts/bench-identity: complete login flows per second
// (authorize → identity provider → callback → token → userinfo, as a browser with its
// own cookies would) and token-endpoint exchanges per second, against Socle (with its
// demonstration identity provider: choice page, FI login page, consent page) and against
// npm oidc-provider — without pages (login and consent granted at once) and with its
// built-in login and consent pages — in the same run, with the same client code.
// "socle, no page" is the flow the issue names (authorize → FI → callback → token →
// userinfo): the service names the provider (idp_hint) and is exempt from consent.
//   node bench.mjs --socle URL --client ID:SECRET --client-direct ID:SECRET --op URL
//                  --op-pages URL --seconds S --concurrency C
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';

const args = Object.fromEntries(process.argv.slice(2).reduce((a, v, i, all) =>
  (v.startsWith('--') ? [...a, [v.slice(2), all[i + 1]]] : a), []));
const SECONDS = Number(args.seconds || 10);
const C = Number(args.concurrency || 16);
const REDIRECT = 'http://127.0.0.1:9/callback';
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

function request(method, url, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ method, host: u.hostname, port: u.port, path: u.pathname + u.search, agent, headers },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
      });
    req.on('error', reject);
    if (body) req.end(body); else req.end();
  });
}

class Jar {
  constructor() { this.c = new Map(); }
  header() { return [...this.c].map(([k, v]) => `${k}=${v}`).join('; '); }
  take(res) {
    for (const s of res.headers['set-cookie'] || []) {
      const [pair] = s.split(';'); const i = pair.indexOf('=');
      this.c.set(pair.slice(0, i), pair.slice(i + 1));
    }
  }
}

async function browse(jar, method, url, form) {
  const headers = { cookie: jar.header(), accept: 'text/html' };
  let body;
  if (form) { body = new URLSearchParams(form).toString(); headers['content-type'] = 'application/x-www-form-urlencoded'; }
  const res = await request(method, url, { headers, body });
  jar.take(res);
  if (res.headers.location) res.location = new URL(res.headers.location, url).href;
  return res;
}

const b64url = (b) => b.toString('base64url');
const field = (html, name) => html.match(new RegExp(`name="${name}" value="([^"]*)"`))[1].replace(/&#(x?)([0-9a-f]+);/gi,
  (_, x, n) => String.fromCodePoint(parseInt(n, x ? 16 : 10))).replace(/&amp;/g, '&');
const hidden = (html) => [...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)]
  .map(([, k, v]) => [k, v.replace(/&#(x?)([0-9a-f]+);/gi, (_, x, n) => String.fromCodePoint(parseInt(n, x ? 16 : 10))).replace(/&amp;/g, '&')]);

// A fresh browser and the authorization request's parameters (PKCE S256).
function start(clientId, extra = {}) {
  const verifier = b64url(randomBytes(32));
  const q = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT,
    scope: 'openid identite_pivot email', state: b64url(randomBytes(32)), nonce: b64url(randomBytes(32)),
    code_challenge: b64url(createHash('sha256').update(verifier).digest()), code_challenge_method: 'S256', ...extra });
  return { jar: new Jar(), verifier, q };
}

function codeOf(r, who, verifier) {
  const code = r.location && new URL(r.location).searchParams.get('code');
  if (!code) throw new Error(`no code from ${who}: ${r.status} ${r.location ?? r.body.slice(0, 200)}`);
  return { code, verifier };
}

// One person's browser up to the code (each target has its own pages).
async function codeFromSocle(base, clientId) {
  const { jar, verifier, q } = start(clientId, { acr_values: 'eidas1' });
  let r = await browse(jar, 'GET', `${base}/api/v2/authorize?${q}`);
  const choiceUrl = r.location;
  r = await browse(jar, 'GET', choiceUrl);
  r = await browse(jar, 'POST', `${choiceUrl}/choice`, { csrf: field(r.body, 'csrf'), provider: 'demo' });
  r = await browse(jar, 'GET', r.location);
  r = await browse(jar, 'POST', `${base}/demo/fi/authorize`, [...hidden(r.body), ['login', 'jean'], ['decision', 'login']]);
  r = await browse(jar, 'GET', r.location);
  const consentUrl = r.location;
  r = await browse(jar, 'GET', consentUrl);
  r = await browse(jar, 'POST', consentUrl, { csrf: field(r.body, 'csrf'), decision: 'accept' });
  return codeOf(r, 'Socle', verifier);
}

// The flow the issue names, authorize → FI → callback → token → userinfo: the service
// names the provider (idp_hint) and is exempt from consent, so no Socle page is shown.
async function codeFromSocleDirect(base, clientId) {
  const { jar, verifier, q } = start(clientId, { acr_values: 'eidas1', idp_hint: 'demo' });
  let r = await browse(jar, 'GET', `${base}/api/v2/authorize?${q}`);
  r = await browse(jar, 'GET', r.location);
  r = await browse(jar, 'POST', `${base}/demo/fi/authorize`, [...hidden(r.body), ['login', 'jean'], ['decision', 'login']]);
  r = await browse(jar, 'GET', r.location);
  return codeOf(r, 'Socle (idp_hint)', verifier);
}

async function codeFromOp(base, clientId) {
  const { jar, verifier, q } = start(clientId);
  let r = await browse(jar, 'GET', `${base}/auth?${q}`);
  while (r.location && !r.location.startsWith(REDIRECT)) r = await browse(jar, 'GET', r.location);
  return codeOf(r, 'oidc-provider', verifier);
}

// oidc-provider's own login and consent pages (devInteractions), submitted as a person.
async function codeFromOpPages(base, clientId) {
  const { jar, verifier, q } = start(clientId);
  let r = await browse(jar, 'GET', `${base}/auth?${q}`);
  for (let hops = 0; hops < 12 && !(r.location && r.location.startsWith(REDIRECT)); hops++) {
    if (r.location) { r = await browse(jar, 'GET', r.location); continue; }
    const action = new URL(r.body.match(/<form autocomplete="off" action="([^"]+)"/)[1], base).href;
    const prompt = r.body.match(/name="prompt" value="([^"]+)"/)[1];
    r = await browse(jar, 'POST', action, prompt === 'login' ? { prompt, login: 'jean', password: 'x' } : { prompt });
  }
  return codeOf(r, 'oidc-provider (pages)', verifier);
}

async function exchange(tokenUrl, clientId, secret, { code, verifier }) {
  const res = await request('POST', tokenUrl, {
    headers: { 'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}` },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, code_verifier: verifier }).toString(),
  });
  if (res.status !== 200) throw new Error(`token: ${res.status} ${res.body}`);
  return JSON.parse(res.body);
}

async function userinfo(url, token) {
  const res = await request('GET', url, { headers: { authorization: `Bearer ${token}` } });
  if (res.status !== 200) throw new Error(`userinfo: ${res.status} ${res.body}`);
}

async function measure(target) {
  const flow = async () => {
    const c = await target.code();
    const t = await exchange(target.token, target.clientId, target.secret, c);
    await userinfo(target.userinfo, t.access_token);
  };
  for (let i = 0; i < C; i++) await flow(); // warm-up
  let flows = 0; const lat = [];
  const end = Date.now() + SECONDS * 1000;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: C }, async () => {
    while (Date.now() < end) {
      const t0 = process.hrtime.bigint();
      await flow();
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
      flows++;
    }
  }));
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  // Token endpoint alone: codes collected first, then exchanged as fast as possible, in
  // rounds of 250 (oidc-provider's in-memory store is an LRU of 1,000 objects: more
  // pending codes would evict their grants).
  let tokenSecs = 0; let exchanged = 0;
  for (let round = 0; round < 6; round++) {
    const codes = [];
    await Promise.all(Array.from({ length: C }, async () => { while (codes.length < 250) codes.push(await target.code()); }));
    const t0 = process.hrtime.bigint();
    let next = 0;
    await Promise.all(Array.from({ length: C }, async () => {
      while (next < codes.length) { const c = codes[next++]; await exchange(target.token, target.clientId, target.secret, c); }
    }));
    tokenSecs += Number(process.hrtime.bigint() - t0) / 1e9;
    exchanged += codes.length;
  }
  lat.sort((a, b) => a - b);
  return { flowsPerSec: flows / elapsed, p50: lat[Math.floor(lat.length / 2)], p99: lat[Math.floor(lat.length * 0.99)],
    tokensPerSec: exchanged / tokenSecs, tokens: exchanged };
}

const [socleId, socleSecret] = args.client.split(':');
const [directId, directSecret] = args['client-direct'].split(':');
const targets = [
  { name: 'socle, no page', clientId: directId, secret: directSecret, code: () => codeFromSocleDirect(args.socle, directId),
    token: `${args.socle}/api/v2/token`, userinfo: `${args.socle}/api/v2/userinfo` },
  { name: 'socle', clientId: socleId, secret: socleSecret, code: () => codeFromSocle(args.socle, socleId),
    token: `${args.socle}/api/v2/token`, userinfo: `${args.socle}/api/v2/userinfo` },
  { name: 'oidc-provider', clientId: 'bench', secret: 'bench-secret-0123456789abcdefghijklmnop',
    code: () => codeFromOp(args.op, 'bench'), token: `${args.op}/token`, userinfo: `${args.op}/me` },
  { name: 'oidc-provider+pages', clientId: 'bench', secret: 'bench-secret-0123456789abcdefghijklmnop',
    code: () => codeFromOpPages(args['op-pages'], 'bench'), token: `${args['op-pages']}/token`, userinfo: `${args['op-pages']}/me` },
];
const results = {};
for (const t of targets) {
  results[t.name] = await measure(t);
  const r = results[t.name];
  console.log(`${t.name.padEnd(20)} login flows ${r.flowsPerSec.toFixed(0).padStart(6)}/s (p50 ${r.p50.toFixed(1)} ms, p99 ${r.p99.toFixed(1)} ms)   token endpoint ${r.tokensPerSec.toFixed(0).padStart(6)}/s (${r.tokens} codes)`);
}
for (const [mine, theirs] of [['socle, no page', 'oidc-provider'], ['socle', 'oidc-provider+pages']]) {
  const s = results[mine]; const o = results[theirs];
  console.log(`ratio ${mine} / ${theirs}: login flows ${(s.flowsPerSec / o.flowsPerSec).toFixed(2)}x, token endpoint ${(s.tokensPerSec / o.tokensPerSec).toFixed(2)}x (target 3x)`);
}
