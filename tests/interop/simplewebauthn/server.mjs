// A relying party on @simplewebauthn/server with the library's own defaults, for keyctl's interop tests.
// The HTTP convention is the one all interop apps share (tests/interop/profiles/interop.toml):
//   POST /register/options {username, residentKey?, userVerification?}  -> the library's options
//   POST /register/verify  <RegistrationResponseJSON>                    -> {verified: true, ...} | 400
//   POST /login/options    {username?, userVerification?}                -> the library's options | 404
//   POST /login/verify     <AuthenticationResponseJSON>                  -> {verified: true, ...} | 400
//   POST /control          {variant: {...}}  options for the next registration (tests only)
// Usage: node server.mjs  (prints "listening PORT" once it accepts connections on 127.0.0.1)
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';

const RP_ID = 'localhost';
const users = new Map(); // username -> {id: Uint8Array, credentials: [WebAuthnCredential]}
const sessions = new Map(); // sid -> {challenge, username, userVerification}
let variant = {};
let origin = '';

const HINTS = { 'security-key': 'securityKey', 'client-device': 'localDevice', hybrid: 'remoteDevice' };

function user(name) {
  if (!users.has(name)) users.set(name, { id: new Uint8Array(randomBytes(16)), credentials: [] });
  return users.get(name);
}

async function registrationOptions(body, session) {
  const account = user(body.username);
  const opts = {
    rpName: 'SimpleWebAuthn interop',
    rpID: RP_ID,
    userName: body.username,
    userID: account.id,
    excludeCredentials: account.credentials.map((c) => ({ id: c.id, transports: c.transports })),
  };
  if (body.residentKey || body.userVerification) {
    opts.authenticatorSelection = {
      ...(body.residentKey && { residentKey: body.residentKey }),
      ...(body.userVerification && { userVerification: body.userVerification }),
    };
  }
  if (variant.attestation) opts.attestationType = variant.attestation;
  if (variant.algorithms) opts.supportedAlgorithmIDs = variant.algorithms;
  if (variant.extensions) opts.extensions = variant.extensions;
  if (variant.hint) opts.preferredAuthenticatorType = HINTS[variant.hint];
  if (variant.exclude === false) opts.excludeCredentials = [];
  const options = await generateRegistrationOptions(opts);
  Object.assign(session, {
    challenge: options.challenge,
    username: body.username,
    userVerification: options.authenticatorSelection?.userVerification,
    algorithms: variant.algorithms,
  });
  return [200, options];
}

function info(fields) {
  return {
    verified: true,
    counter: fields.counter,
    userVerified: fields.userVerified,
    backupEligible: fields.credentialDeviceType === 'multiDevice',
    backupState: fields.credentialBackedUp,
  };
}

async function verifyRegistration(body, session) {
  const account = users.get(session.username);
  const verification = await verifyRegistrationResponse({
    response: body,
    expectedChallenge: session.challenge ?? '',
    expectedOrigin: origin,
    expectedRPID: RP_ID,
    requireUserVerification: session.userVerification === 'required',
    ...(session.algorithms && { supportedAlgorithmIDs: session.algorithms }),
  });
  delete session.challenge;
  if (!verification.verified) return [400, { error: 'registration not verified' }];
  const registration = verification.registrationInfo;
  account.credentials.push(registration.credential);
  return [
    200,
    {
      ...info({ ...registration, counter: registration.credential.counter }),
      username: session.username,
      fmt: registration.fmt,
      attestationChecked: true,
      aaguid: registration.aaguid,
      credProps: body.clientExtensionResults?.credProps ?? null,
    },
  ];
}

async function loginOptions(body, session) {
  let allowCredentials;
  if (body.username !== undefined) {
    const account = users.get(body.username);
    if (!account) return [404, { error: `User ${body.username} is not registered` }];
    allowCredentials = account.credentials.map((c) => ({ id: c.id, transports: c.transports }));
  }
  const options = await generateAuthenticationOptions({
    rpID: RP_ID,
    allowCredentials,
    ...(body.userVerification && { userVerification: body.userVerification }),
  });
  Object.assign(session, { challenge: options.challenge, userVerification: options.userVerification });
  return [200, options];
}

async function verifyLogin(body, session) {
  for (const [username, account] of users) {
    const credential = account.credentials.find((c) => c.id === body.id);
    if (!credential) continue;
    const verification = await verifyAuthenticationResponse({
      response: body,
      expectedChallenge: session.challenge ?? '',
      expectedOrigin: origin,
      expectedRPID: RP_ID,
      credential,
      requireUserVerification: session.userVerification === 'required',
    });
    delete session.challenge;
    if (!verification.verified) return [400, { error: 'authentication not verified' }];
    credential.counter = verification.authenticationInfo.newCounter;
    return [200, { ...info({ ...verification.authenticationInfo, counter: credential.counter }), username }];
  }
  return [400, { error: 'Authenticator is not registered with this site' }];
}

// The routes of SimpleWebAuthn's own example app (example/index.ts), which keyctl's built-in
// `simplewebauthn` profile follows: one logged-in user, GET for options, {verified} back.
const EXAMPLE_USER = `user@${RP_ID}`;

async function exampleRegistrationOptions(body, session) {
  const account = user(EXAMPLE_USER);
  const options = await generateRegistrationOptions({
    rpName: 'SimpleWebAuthn Example',
    rpID: RP_ID,
    userName: EXAMPLE_USER,
    timeout: 60000,
    attestationType: 'none',
    excludeCredentials: account.credentials.map((c) => ({ id: c.id, transports: c.transports })),
    authenticatorSelection: { residentKey: 'discouraged', userVerification: 'preferred' },
    supportedAlgorithmIDs: [-7, -8, -257],
  });
  Object.assign(session, { challenge: options.challenge, username: EXAMPLE_USER });
  return [200, options];
}

async function exampleAuthenticationOptions(body, session) {
  const options = await generateAuthenticationOptions({
    rpID: RP_ID,
    timeout: 60000,
    allowCredentials: user(EXAMPLE_USER).credentials.map((c) => ({ id: c.id, transports: c.transports })),
    userVerification: 'preferred',
  });
  Object.assign(session, { challenge: options.challenge, userVerification: 'preferred' });
  return [200, options];
}

const exampleRoutes = {
  'GET /generate-registration-options': exampleRegistrationOptions,
  'POST /verify-registration': async (body, session) => {
    const [status, answer] = await verifyRegistration(body, session);
    return [status, status === 200 ? { verified: answer.verified } : answer];
  },
  'GET /generate-authentication-options': exampleAuthenticationOptions,
  'POST /verify-authentication': async (body, session) => {
    const [status, answer] = await verifyLogin(body, session);
    return [status, status === 200 ? { verified: answer.verified } : answer];
  },
};

const routes = {
  '/register/options': registrationOptions,
  '/register/verify': verifyRegistration,
  '/login/options': loginOptions,
  '/login/verify': verifyLogin,
  '/control': async (body) => {
    variant = body.variant ?? {};
    return [200, { ok: true, unsupported: [] }];
  },
};

const server = http.createServer(async (request, response) => {
  const chunks = [];
  for await (const chunk of request) chunks.push(chunk);
  const example = exampleRoutes[`${request.method} ${request.url}`];
  const cookie = example ? 'connect.sid' : 'sid';
  let sid = new RegExp(`(?:^|;\\s*)${cookie.replace('.', '\\.')}=([^;]+)`).exec(request.headers.cookie ?? '')?.[1];
  if (!sid || !sessions.has(sid)) {
    sid = randomBytes(16).toString('hex');
    sessions.set(sid, {});
  }
  const route = example ?? (request.method === 'POST' ? routes[request.url] : undefined);
  let status = 404;
  let answer = { error: `no route ${request.method} ${request.url}` };
  if (route) {
    try {
      [status, answer] = await route(JSON.parse(Buffer.concat(chunks).toString() || '{}'), sessions.get(sid));
    } catch (error) {
      [status, answer] = [400, { error: error.message }];
    }
  }
  response.writeHead(status, { 'Content-Type': 'application/json', 'Set-Cookie': `${cookie}=${sid}; HttpOnly; Path=/` });
  response.end(JSON.stringify(answer));
});

server.listen(0, '127.0.0.1', () => {
  origin = `http://localhost:${server.address().port}`;
  console.log(`listening ${server.address().port}`);
});
