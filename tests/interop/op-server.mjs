// npm oidc-provider as a baseline for scripts/bench-identity: the same code flow (PKCE,
// pivot-identity claims, userinfo), one registered client.
//   node op-server.mjs PORT direct|pages
// Its storage is an unbounded in-memory adapter (the built-in development adapter is an
// LRU of 1,000 objects, which evicts grants under load). Prints "listening <issuer>".
import http from 'node:http';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);
// "direct": the person is logged in and consents at once (no page); "pages": the
// built-in login and consent pages are rendered and submitted, as a person would.
const pages = process.argv[3] === 'pages';

const stores = new Map();
class MemoryAdapter {
  constructor(name) { this.name = name; if (!stores.has(name)) stores.set(name, new Map()); this.m = stores.get(name); }
  key(id) { return id; }
  async upsert(id, payload, expiresIn) {
    this.m.set(id, { payload, exp: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
    if (payload.grantId) {
      const g = stores.get('grants') ?? new Map(); stores.set('grants', g);
      const list = g.get(payload.grantId) ?? []; list.push([this.name, id]); g.set(payload.grantId, list);
    }
    if (payload.uid) { this.uids ??= new Map(); this.uids.set(payload.uid, id); }
  }
  async find(id) {
    const e = this.m.get(id);
    if (!e) return undefined;
    if (e.exp < Date.now()) { this.m.delete(id); return undefined; }
    return e.payload;
  }
  async findByUid(uid) { const id = this.uids?.get(uid); return id && this.find(id); }
  async findByUserCode() { return undefined; }
  async consume(id) { const e = this.m.get(id); if (e) e.payload.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { this.m.delete(id); }
  async revokeByGrantId(grantId) {
    for (const [name, id] of stores.get('grants')?.get(grantId) ?? []) stores.get(name)?.delete(id);
  }
}
// Expired objects are swept every 10 s.
setInterval(() => { const now = Date.now(); for (const m of stores.values()) for (const [k, v] of m) if (v.exp < now) m.delete(k); }, 10_000).unref();
const server = http.createServer();
await new Promise((r) => server.listen(port, '127.0.0.1', r));
const issuer = `http://127.0.0.1:${server.address().port}`;
const provider = new Provider(issuer, {
  adapter: MemoryAdapter,
  clients: [{ client_id: 'bench', client_secret: 'bench-secret-0123456789abcdefghijklmnop',
    redirect_uris: ['http://127.0.0.1:9/callback'], id_token_signed_response_alg: 'ES256' }],
  claims: { openid: ['sub'], identite_pivot: ['given_name', 'family_name', 'birthdate', 'gender', 'birthplace', 'birthcountry'], email: ['email'] },
  pkce: { required: () => true },
  jwks: { keys: [await (async () => {
    const { privateKey } = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign']);
    return { ...(await crypto.subtle.exportKey('jwk', privateKey)), kid: 'bench', alg: 'ES256', use: 'sig' };
  })()] },
  features: { devInteractions: { enabled: pages } },
  ttl: { AccessToken: 60, AuthorizationCode: 30, IdToken: 300, Interaction: 600, Session: 1800, Grant: 1800 },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() {
      return { sub: id, given_name: 'Jean', family_name: 'Martin', birthdate: '1972-01-01', gender: 'male',
        birthplace: '69123', birthcountry: '99100', email: 'jean.martin@example.fr' };
    } };
  },
});
const callback = provider.callback();
server.on('request', (req, res) => {
  if (!pages && req.url.startsWith('/interaction/')) {
    (async () => {
      const details = await provider.interactionDetails(req, res);
      const grant = new provider.Grant({ accountId: 'jean', clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, { login: { accountId: 'jean', acr: 'eidas1' }, consent: { grantId } },
        { mergeWithLastSubmission: false });
    })().catch((e) => { res.statusCode = 500; res.end(String(e)); });
  } else {
    callback(req, res);
  }
});
console.log(`listening ${issuer}`);
