/**
 * The reliability suite's `fuzz` and `security` phases (required by reliability.js): the seeded generator of
 * bad-input cases over every public endpoint (hostile JSON values, mutated bodies, hostile paths, queries,
 * headers, content types and keys), slow-body (slowloris) connections, the fuzz run itself with its NUL-byte
 * regressions, and the per-route auth/scope and CORS checks. It boots nothing: it talks to the gateway the
 * suite started, through support.js, and draws every random choice from the one seeded RNG there.
 */
'use strict';
const { connect: netConnect } = require('node:net');
const crypto = require('node:crypto');
const {
  FUZZ_N, USER_KEY, ADMIN_KEY, WRONG_KEY, summary, fivexxSamples, state, check, rnd, ri, pick, procs, alive, req, bearer, jsonH, record5xx, pool,
} = require('./support');

// ---------- fuzz generators ----------
const hostileValues = () => [
  null, true, false, 0, -1, 1.5, -0, 1e308, -1e308, 2 ** 53 + 1, Number.MAX_SAFE_INTEGER, 1e-320, 4294967297,
  '', ' ', 'x'.repeat(ri(3) === 0 ? 200_000 : 5000), '\u0000', '\ud800', '\uffff', '🔥'.repeat(1000), '<script>alert(1)</script>',
  "'; DROP TABLE feedback; --", '../../../../etc/passwd', '%s%s%n', '{{7*7}}', '__proto__', [], {}, [[[[]]]], { __proto__: { polluted: 1 } },
  { constructor: { prototype: { x: 1 } } }, Array.from({ length: 2000 }, (_, i) => i), Array.from({ length: 70 }, () => 'a'),
  { role: 'user', content: 'hi' }, [{ role: 'user', content: 'hi' }], [{ type: 'text', text: 'hi' }], [{ type: 'image_url', image_url: { url: 'x' } }],
  'up', 'down', 'rating', 'preference', { chosen: 0, rejected: 0 }, { chosen: -1, rejected: 1e9 }, 16, 17, 4096, 100000,
];
function deepNest(depth, open = '[', close = ']') {
  return open.repeat(depth) + close.repeat(depth);
}
function mutate(obj, depth = 0) {
  if (obj === null || typeof obj !== 'object') return pick(hostileValues());
  const copy = Array.isArray(obj) ? [...obj] : { ...obj };
  const keys = Object.keys(copy);
  const op = ri(6);
  if (op === 0 || keys.length === 0) copy[pick(['__proto__', 'constructor', 'extra_field', 'tools', 'functions', 'suffix', 'n', 'logit_bias', pick(keys.length ? keys : ['x'])])] = pick(hostileValues());
  else if (op === 1) delete copy[pick(keys)];
  else if (op === 2 && depth < 4) {
    const k = pick(keys);
    copy[k] = mutate(copy[k], depth + 1);
  } else copy[pick(keys)] = pick(hostileValues());
  return copy;
}
const templates = {
  chat: () => ({ model: 'stories260K', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 4, stream: rnd() < 0.3, n: 1, temperature: 0.7, stop: ['.'], logprobs: rnd() < 0.3, top_logprobs: 2 }),
  completion: () => ({ model: 'stories260K', prompt: pick(['Once', ['a', 'b'], [1, 2, 3], [[1, 2], [3]]]), max_tokens: 4, stream: rnd() < 0.3, echo: rnd() < 0.5, logprobs: 1, logit_bias: { 5: -100 } }),
  moderation: () => ({ input: pick(['hello', ['a', 'b'], 'I will hurt someone']), model: 'omni-moderation-latest' }),
  feedback: () => ({ completion_id: pick(['chatcmpl-none', `chatcmpl-${crypto.randomBytes(8).toString('hex')}`, state.completionId || 'chatcmpl-x']), choice_index: 0, kind: pick(['rating', 'thumbs', 'flag', 'correction', 'preference']), value: pick([4, 'up', 'other', 'better', { chosen: 0, rejected: 1 }]), comment: 'c', idempotency_key: `fz-${ri(1e9)}` }),
  session: () => ({ key: pick([ADMIN_KEY, USER_KEY, WRONG_KEY, '', 'x']) }),
  reviews: () => ({ actions: [{ action: pick(['approve', 'reject', 'reset', 'edit', 'choose']), feedback_id: `fb-${ri(1e6)}`, completion_id: state.completionId, chosen: 0, rejected: 1, text: 'x', note: 'n' }] }),
  exports: () => ({ format: pick(['sft', 'preference', 'kto', 'csv']), filters: { policy_version: 'base', from: pick(['2026-01-01T00:00:00Z', 'yesterday', 1e15]), to: pick(['2030-01-01', null]) } }),
  promote: () => ({ version: pick(['base', 'v1', '../x', '']), model: 'stories260K' }),
};
const endpoints = [
  { method: 'POST', path: '/v1/chat/completions', t: 'chat', scope: 'user' },
  { method: 'POST', path: '/v1/completions', t: 'completion', scope: 'user' },
  { method: 'GET', path: '/v1/models', scope: 'user' },
  { method: 'GET', path: '/v1/models/stories260K', scope: 'user' },
  { method: 'POST', path: '/v1/moderations', t: 'moderation', scope: 'user' },
  { method: 'POST', path: '/v1/feedback', t: 'feedback', scope: 'user' },
  { method: 'GET', path: '/v1/feedback?completion_id=chatcmpl-none', scope: 'user' },
  { method: 'POST', path: '/admin/api/session', t: 'session', scope: 'login' },
  { method: 'GET', path: '/admin/api/session', scope: 'admin' },
  { method: 'GET', path: '/admin/api/inbox', scope: 'admin' },
  { method: 'GET', path: '/admin/api/policy-versions', scope: 'admin' },
  { method: 'GET', path: '/admin/api/completions/chatcmpl-none', scope: 'admin' },
  { method: 'GET', path: '/admin/api/stats', scope: 'admin' },
  { method: 'POST', path: '/admin/api/reviews', t: 'reviews', scope: 'admin' },
  { method: 'POST', path: '/admin/api/exports', t: 'exports', scope: 'admin' },
  { method: 'GET', path: '/admin/api/exports', scope: 'admin' },
  { method: 'GET', path: '/admin/api/exports/exp-none/download', scope: 'admin' },
  { method: 'GET', path: '/admin/api/models', scope: 'admin' },
  { method: 'POST', path: '/admin/api/models/promote', t: 'promote', scope: 'admin' },
  { method: 'POST', path: '/admin/api/models/rollback', t: 'promote', scope: 'admin' },
];
const hostileQueryVals = ['', '-1', '1e400', 'NaN', '999999999999999999999', '%00', '%ff%fe', '%E0%80%AF', 'a'.repeat(5000), '[]', '{"a":1}', 'true', '2026-13-45', '../..', "' OR 1=1 --", '%', '%zz'];
function fuzzQuery(p) {
  const base = p.split('?')[0];
  if (rnd() < 0.5) return p;
  const names = ['view', 'status', 'kind', 'policy_version', 'flagged', 'from', 'to', 'q', 'cursor', 'limit', 'bucket', 'completion_id', 'x'];
  const parts = Array.from({ length: 1 + ri(4) }, () => `${pick(names)}=${pick(hostileQueryVals)}`);
  return `${base}?${parts.join('&')}`;
}
function fuzzPath(p) {
  const r = ri(8);
  if (r === 0) return p.replace(/[^/]+$/, encodeURIComponent(pick(['..', '%2e%2e', 'a'.repeat(3000), '\u0000', '😀', 'chatcmpl-' + 'z'.repeat(500)])));
  if (r === 1) return p + pick(['/', '//', '/..', '/%2e%2e/%2e%2e/etc/passwd', '?', '#x', ';a=b']);
  return p;
}
function authHeaders(scope) {
  const r = rnd();
  if (r < 0.08) return {};
  if (r < 0.12) return bearer(WRONG_KEY);
  if (r < 0.15) return { authorization: pick(['Bearer', 'Bearer ', 'Basic Zm9vOmJhcg==', `bearer ${USER_KEY}`, `Bearer  ${USER_KEY}`, `Bearer ${USER_KEY}x`, 'Bearer ' + 'k'.repeat(9000), `Bearer ${USER_KEY}\u00ff`]) };
  if (r < 0.18) return bearer(scope === 'user' ? ADMIN_KEY : USER_KEY);
  if (scope === 'user') return bearer(USER_KEY);
  if (scope === 'admin') return { cookie: rnd() < 0.05 ? 'flywheel_admin_session=' + 'x'.repeat(100) : state.adminCookie, 'x-csrf-token': rnd() < 0.1 ? 'bad' : state.csrf };
  return {};
}
function bodyFor(ep) {
  const tpl = ep.t ? templates[ep.t]() : {};
  const r = ri(20);
  if (r === 0) return JSON.stringify(tpl).slice(0, ri(JSON.stringify(tpl).length)); // truncated JSON
  if (r === 1) return deepNest(pick([100, 1000, 5000, 50000]), pick(['[', '{"a":', '[{"a":']), '').padEnd(10, ']');
  if (r === 2) return deepNest(pick([64, 512, 4000]));
  if (r === 3) return Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"'), Buffer.from([0xff, 0xfe, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xf8, 0x88]), Buffer.from('"}],"prompt":"\xff","input":"x"}')]);
  if (r === 4) return pick(['', 'null', 'true', '1', '"x"', '[]', '{}', '{"a":1,}', "{'a':1}", 'NaN', '{"a":1e99999}', '\u0000', '{"model":"stories260K","messages":[{"role":"user","content":"hi"}],"max_tokens":1e400}']);
  if (r === 5) return JSON.stringify({ ...tpl, [`k${ri(10)}`]: 'x'.repeat(pick([10_000, 900_000, 1_100_000])) }); // around the body limit
  if (r === 6) return crypto.randomBytes(ri(4096)).toString('latin1');
  if (r === 7) return JSON.stringify(tpl);
  if (r === 8) return '{"a":' + '1'.repeat(5000) + '}';
  let m = tpl;
  for (let i = 0, n = 1 + ri(3); i < n; i++) m = mutate(m);
  // cap generation cost when a mutation happens to be valid
  if (ep.t === 'chat' || ep.t === 'completion') if (typeof m === 'object' && m && !Array.isArray(m) && ri(4) !== 0) m.max_tokens = Math.min(8, Number(m.max_tokens) || 8);
  return JSON.stringify(m);
}
function contentTypeFor() {
  return pick([
    'application/json', 'application/json', 'application/json', 'application/json; charset=utf-8', 'application/json; charset=latin1', 'text/plain', 'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=xyz', 'application/octet-stream', 'application/json; charset=utf-16', 'APPLICATION/JSON', '', 'application/*', 'application/vnd.api+json', 'text/html; x=' + 'y'.repeat(2000),
  ]);
}
function oneFuzz() {
  const r = ri(30);
  if (r === 0) {
    // random method / path
    return { method: pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO']), path: pick(['/', '/v1', '/v2/chat', '/v1/chat/completions/x', '/admin', '/admin/../../etc/passwd', '/admin/%2e%2e/%2e%2e/package.json', '/metrics', '/healthz', '/livez', '/readyz', '/' + 'a'.repeat(ri(8000)), '/v1/models/' + '%ff'.repeat(20), '/admin/assets/..%2f..%2fpackage.json', '/%00', '/v1/feedback/../models']), headers: bearer(USER_KEY) };
  }
  const ep = pick(endpoints);
  const method = ri(15) === 0 ? pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) : ep.method;
  const headers = authHeaders(ep.scope);
  // a DELETE of the session with our cookie + state.csrf would log the fuzzer out and turn every later admin case
  // into a 401 (timing-dependent coverage): logout is exercised with a bogus cookie instead
  if (method === 'DELETE' && ep.path.startsWith('/admin/api/session')) headers.cookie = 'flywheel_admin_session=bogus';
  const p = fuzzPath(fuzzQuery(ep.path));
  let body;
  if (method !== 'GET' && method !== 'HEAD') {
    body = bodyFor(ep);
    headers['content-type'] = contentTypeFor();
    if (headers['content-type'] === '') delete headers['content-type'];
  }
  if (ri(40) === 0) headers['x-big'] = 'h'.repeat(pick([4000, 20_000, 70_000])); // oversized headers
  if (ri(30) === 0) headers['x-request-id'] = pick(['', '\t', 'x'.repeat(5000), '../../', 'a\u00ffb']);
  if (ri(60) === 0) headers['content-encoding'] = pick(['gzip', 'br', 'deflate', 'bogus']);
  if (ri(60) === 0) headers['accept'] = 'text/event-stream';
  return { method, path: p, headers, body };
}

async function slowloris(n) {
  // a few slow bodies: announce a length, trickle bytes, then stop; the gateway must not 5xx nor crash
  const results = [];
  await Promise.all(
    Array.from({ length: n }, (_, i) =>
      new Promise((resolve) => {
        const s = netConnect(state.gwPort, '127.0.0.1');
        let answer = '';
        const body = JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: 'slow' }], max_tokens: 2 });
        s.on('data', (d) => (answer += d.toString()));
        s.on('error', () => undefined);
        s.on('close', () => resolve(answer));
        s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${USER_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${body.length + (i % 2 ? 50 : 0)}\r\n\r\n`);
        let k = 0;
        const timer = setInterval(() => {
          if (k < Math.min(body.length, 25) && !s.destroyed) s.write(body[k++]);
          else {
            clearInterval(timer);
            if (i % 2 === 0 && !s.destroyed) s.write(body.slice(k)); // completes its body late
            setTimeout(() => s.destroy(), 8000);
          }
        }, 150);
      }).then((a) => results.push(a)),
    ),
  );
  summary.requests_sent += n;
  return results;
}

/** Phase `fuzz`: FUZZ_N seeded cases through a pool of 24, slowloris, NUL-byte regressions, then a normal chat. */
async function runFuzzPhase({ normalChat }) {
  const fz = { sent: 0, byStatus: {}, timeouts: 0, notSent: 0 };
  const fuzzStart = Date.now();
  const cases = Array.from({ length: FUZZ_N }, () => oneFuzz()); // generated up front: same seed, same cases
  await pool(cases.length, 24, async (k) => {
    const c = cases[k];
    const res = await req({ ...c, timeoutMs: 30_000 });
    if (res.notSent) return void (fz.notSent += 1);
    fz.sent += 1;
    fz.byStatus[res.status] = (fz.byStatus[res.status] || 0) + 1;
    if (res.timedOut) {
      fz.timeouts += 1;
      summary.hangs += 1;
    }
    record5xx('fuzz', c, res);
  });
  const slow = await slowloris(6);
  for (const a of slow) {
    const m = /^HTTP\/1\.1 (\d+)/.exec(a);
    if (m && Number(m[1]) >= 500) record5xx('slowloris', { method: 'POST', path: '/v1/chat/completions' }, { status: Number(m[1]), body: a });
  }
  summary.fuzz = { cases: cases.length, sent: fz.sent, not_sendable_by_node: fz.notSent, by_status: fz.byStatus, timeouts: fz.timeouts, seconds: Math.round((Date.now() - fuzzStart) / 1000), slowloris_answers: slow.map((a) => (/^HTTP\/1\.1 (\d+)/.exec(a) || [0, 'closed'])[1]) };
  check('fuzz: zero 5xx', summary['5xx'] === 0, JSON.stringify(fivexxSamples.slice(0, 5)));
  check('fuzz: zero timeouts', fz.timeouts === 0, `${fz.timeouts}`);
  check('fuzz: all processes alive', procs.filter((p) => !p.expectedExit).every(alive), procs.filter((p) => !p.expectedExit && !alive(p)).map((p) => p.name).join(',')); // (phase embedded's launcher has stopped on purpose)
  // regressions of bugs this suite found: NUL bytes in ids / filters reaching the database were 500s
  const nulPaths = [
    ['/admin/api/completions/%00', 'admin'], ['/admin/api/exports/%00/download', 'admin'], ['/admin/api/inbox?q=%00', 'admin'], ['/admin/api/inbox?policy_version=a%00b', 'admin'],
    ['/admin/api/stats?policy_version=%00', 'admin'], ['/admin/api/inbox?view=completions&q=%00', 'admin'], ['/v1/feedback?completion_id=chatcmpl-%00', 'user'], ['/v1/models/%00', 'user'],
  ];
  const nulBad = [];
  for (const [p, scope] of nulPaths) {
    const r = await req({ path: p, headers: scope === 'admin' ? { cookie: state.adminCookie } : bearer(USER_KEY) });
    if (r.status >= 500 || r.status === 0) nulBad.push(`${p} → ${r.status}`);
  }
  for (const body of [{ completion_id: 'chatcmpl-\u0000', kind: 'rating', value: 3 }, { completion_id: state.completionId, kind: 'correction', value: 'a\u0000b', comment: '\u0000' }]) {
    const r = await req({ method: 'POST', path: '/v1/feedback', headers: jsonH(USER_KEY), body: JSON.stringify(body) });
    if (r.status >= 500 || r.status === 0) nulBad.push(`POST /v1/feedback ${JSON.stringify(body)} → ${r.status}`);
  }
  check('fuzz regressions: NUL bytes in ids, filters and feedback never 5xx', nulBad.length === 0, nulBad.join('; '));
  const after = await normalChat();
  check('fuzz: a normal request succeeds afterwards', after.status === 200, `${after.status} ${after.body?.slice(0, 200)}`);
}

/** Phase `security`: every route refuses no key, a wrong key and the other scope; CORS stays closed. */
async function runSecurityPhase() {
  const routes = endpoints.filter((e) => e.scope !== 'login');
  const sec = [];
  for (const e of routes) {
    const body = e.t ? JSON.stringify(templates[e.t]()) : undefined;
    const h = body ? { 'content-type': 'application/json' } : {};
    const none = await req({ method: e.method, path: e.path, headers: h, body });
    const wrong = await req({ method: e.method, path: e.path, headers: { ...h, ...bearer(WRONG_KEY) }, body });
    if (none.status !== 401) sec.push(`${e.method} ${e.path} no key → ${none.status}`);
    if (wrong.status !== 401 && !(e.scope === 'admin' && wrong.status === 403)) sec.push(`${e.method} ${e.path} wrong key → ${wrong.status}`);
    if (e.scope === 'admin') {
      const user = await req({ method: e.method, path: e.path, headers: { ...h, ...bearer(USER_KEY) }, body });
      if (user.status !== 403 && user.status !== 401) sec.push(`${e.method} ${e.path} user key → ${user.status}`);
    } else {
      const adm = await req({ method: e.method, path: e.path, headers: { ...h, ...bearer(ADMIN_KEY) }, body });
      if (adm.status !== 403) sec.push(`${e.method} ${e.path} admin key on /v1 → ${adm.status}`);
    }
  }
  const userLogin = await req({ method: 'POST', path: '/admin/api/session', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: USER_KEY }) });
  if (userLogin.status !== 403) sec.push(`admin login with a user key → ${userLogin.status}`);
  check('security: every /v1 and /admin/api route refuses no key, wrong key and the other scope', sec.length === 0, sec.join('; '));
  const origin = 'http://evil.example';
  const corsGet = await req({ path: '/v1/models', headers: { ...bearer(USER_KEY), origin } });
  const corsPre = await req({ method: 'OPTIONS', path: '/v1/chat/completions', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
  const corsAdm = await req({ method: 'OPTIONS', path: '/admin/api/session', headers: { origin, 'access-control-request-method': 'POST' } });
  const acao = [corsGet, corsPre, corsAdm].map((r) => r.headers?.['access-control-allow-origin']).filter(Boolean);
  check('security: CORS closed (no Access-Control-Allow-Origin on cross-origin request or preflight)', acao.length === 0, `${acao.join(',')} preflight status ${corsPre.status}`);
  summary.cors_preflight_status = corsPre.status;
}

module.exports = { endpoints, templates, oneFuzz, slowloris, runFuzzPhase, runSecurityPhase };
