// A real OpenID provider (oidc-provider) on loopback for Warrant's federation tests.
//
// Environment:
//   PORT           the loopback port to listen on (required); the issuer is http://127.0.0.1:<PORT>
//   ACCOUNTS       a JSON file of accounts, read again at every lookup:
//                  {"alice": {"password": "...", "name": "...", "email": "...", "groups": ["..."]}}
//                  the key is the account id (the ID token's `sub`)
//   CLIENT_ID      the one client's id (default warrant-test); a public client, PKCE S256 required
//   REDIRECT_URI   its redirect URI (default http://127.0.0.1:9/callback)
//   EXTRA_KEY_ALG  ES256 to also publish (and allow) an ES256 signing key
//   KEY_FILE       if set, the signing keys (private JWKs) are written there, so a test can
//                  sign tokens the provider never would (expired, for another audience)
//
// Login is a minimal, form-driven interaction: GET /interaction/<uid> shows a form that
// posts `login` and `password` to /interaction/<uid>/login; a right password signs the
// account in and grants `openid profile email groups` in one step (no consent page).
// Prints `listening on http://127.0.0.1:<PORT>` once ready; exits on SIGTERM or SIGINT.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number.parseInt(process.env.PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('provider.mjs: set PORT to the loopback port to listen on');
  process.exit(2);
}
const accountsFile = process.env.ACCOUNTS;
if (!accountsFile) {
  console.error('provider.mjs: set ACCOUNTS to the accounts JSON file');
  process.exit(2);
}
const clientId = process.env.CLIENT_ID || 'warrant-test';
const redirectUri = process.env.REDIRECT_URI || 'http://127.0.0.1:9/callback';
const issuer = `http://127.0.0.1:${port}`;
const SCOPE = 'openid profile email groups';

function signingKey(type, options, alg, kid) {
  const { privateKey } = generateKeyPairSync(type, options);
  return { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const keys = [signingKey('rsa', { modulusLength: 2048 }, 'RS256', `rs256-${randomBytes(4).toString('hex')}`)];
const extraAlg = process.env.EXTRA_KEY_ALG;
if (extraAlg === 'ES256') {
  keys.push(signingKey('ec', { namedCurve: 'P-256' }, 'ES256', `es256-${randomBytes(4).toString('hex')}`));
} else if (extraAlg) {
  console.error(`provider.mjs: EXTRA_KEY_ALG=${extraAlg} is not supported (only ES256)`);
  process.exit(2);
}

if (process.env.KEY_FILE) {
  writeFileSync(process.env.KEY_FILE, JSON.stringify({ keys }), { mode: 0o600 });
}

// Read at every lookup, so a test can rewrite the file between logins.
function readAccounts() {
  return JSON.parse(readFileSync(accountsFile, 'utf8'));
}

function account(id) {
  const accounts = readAccounts();
  return Object.hasOwn(accounts, id) ? accounts[id] : undefined;
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      token_endpoint_auth_method: 'none',
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'RS256',
    },
  ],
  jwks: { keys },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    profile: ['name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // Put the scopes' claims in the ID token itself, not only at the userinfo endpoint.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  // oidc-provider's own defaults, spelled out so it does not print a notice for each.
  ttl: {
    AccessToken: 60 * 60,
    AuthorizationCode: 60,
    IdToken: 60 * 60,
    Interaction: 60 * 60,
    Grant: 14 * 24 * 60 * 60,
    Session: 14 * 24 * 60 * 60,
  },
  features: {
    devInteractions: { enabled: false },
  },
  interactions: {
    url: (ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async findAccount(ctx, sub) {
    const found = account(sub);
    if (!found) return undefined;
    return {
      accountId: sub,
      async claims() {
        // Read again here: the groups are whatever the file says when the token is made.
        const now = account(sub) ?? found;
        return { sub, name: now.name, email: now.email, email_verified: now.email_verified ?? true, groups: now.groups ?? [] };
      },
    };
  },
});

provider.on('server_error', (ctx, error) => {
  console.error('provider server_error:', error);
});

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function send(res, status, body, type = 'text/html; charset=utf-8') {
  res.statusCode = status;
  res.setHeader('Content-Type', type);
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

function loginPage(uid, message = '') {
  return `<!doctype html>
<html><head><title>Sign in</title></head><body>
<h1>Sign in</h1>${message ? `<p class="error">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<input name="login" autocomplete="username"> <input name="password" type="password">
<button type="submit">Sign in</button>
</form></body></html>
`;
}

async function formBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Grants everything the client asked for within SCOPE (and every scope's claims).
async function grantFor(details, accountId) {
  const { Grant } = provider;
  let grant = details.grantId ? await Grant.find(details.grantId) : undefined;
  if (!grant) grant = new Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(SCOPE);
  return grant.save();
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, 'interaction mismatch\n', 'text/plain; charset=utf-8');
    return;
  }
  const { prompt } = details;

  if (prompt.name === 'consent') {
    // Signed in already (a session): grant without asking.
    const grantId = await grantFor(details, details.session.accountId);
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  if (prompt.name !== 'login') {
    send(res, 400, `unsupported prompt ${prompt.name}\n`, 'text/plain; charset=utf-8');
    return;
  }
  if (req.method === 'GET') {
    send(res, 200, loginPage(uid));
    return;
  }
  if (action !== 'login') {
    send(res, 405, 'POST to /interaction/<uid>/login\n', 'text/plain; charset=utf-8');
    return;
  }

  const form = await formBody(req);
  const login = form.get('login') ?? '';
  const password = form.get('password') ?? '';
  const found = login ? account(login) : undefined;
  if (!found || typeof found.password !== 'string' || found.password !== password) {
    send(res, 401, loginPage(uid, 'wrong login or password'));
    return;
  }
  const grantId = await grantFor(details, login);
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: login }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login))?\/?$/;
const handle = provider.callback();

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, issuer);
  const match = INTERACTION.exec(pathname);
  if (!match) {
    handle(req, res);
    return;
  }
  if (req.method !== 'GET' && req.method !== 'POST') {
    send(res, 405, 'method not allowed\n', 'text/plain; charset=utf-8');
    return;
  }
  interaction(req, res, match[1], match[2]).catch((error) => {
    // SessionNotFound and friends: a missing or expired interaction cookie.
    const status = error.statusCode ?? 500;
    if (status >= 500) console.error('interaction error:', error);
    if (!res.headersSent) {
      send(res, status, `${error.name}: ${error.error_description ?? error.message}\n`, 'text/plain; charset=utf-8');
    } else {
      res.end();
    }
  });
});

function shutdown() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on ${issuer}\n`);
});
