// Tests of the Node.js bootstrap shim: each test writes a fixture function into a fresh
// directory, serves a fake Lambda Runtime API on 127.0.0.1:0, runs `node bootstrap.cjs`
// against it as Nimbus does, and checks what the fake API received and what the shim
// printed.
//
// Fixtures are txtar archives (test/fixtures/*.txtar: a comment, then `-- path --` lines
// each followed by a file's text). They are not checked in as loose .js files because
// `node --test <dir>` runs every .js/.mjs/.cjs file under a `test` directory as a test
// file, and because the repository ignores node_modules/, which the aws-sdk fixture needs.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BOOTSTRAP = path.resolve(HERE, '..', 'bootstrap.cjs');
const FIXTURES = path.join(HERE, 'fixtures');
/** How long a test waits for the shim before failing with what it printed. */
const PATIENCE_MS = 15_000;
const ENDPOINT = 'http://127.0.0.1:4566';
const ARN = 'arn:aws:lambda:us-east-1:000000000000:function:fixture-fn';
const LOG_LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t([^\t]+)\t([A-Z]+)\t(.*)$/s;

// ---------------------------------------------------------------------------------------
// Harness.

/** Writes fixture `name` into a fresh temporary directory and returns the directory. */
function materialise(name) {
  const text = fs.readFileSync(path.join(FIXTURES, `${name}.txtar`), 'utf8');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `nimbus-node-${name}-`));
  let file = null;
  let lines = [];
  const flush = () => {
    if (file === null) return;
    const target = path.join(dir, file);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, lines.length ? `${lines.join('\n')}\n` : '');
  };
  for (const line of text.replace(/\n$/, '').split('\n')) {
    const marker = /^-- (.+) --$/.exec(line);
    if (marker) {
      flush();
      file = marker[1];
      lines = [];
    } else if (file !== null) {
      lines.push(line);
    }
  }
  flush();
  return dir;
}

/**
 * A fake Runtime API. Hands out `invocations` in order on GET .../next (then holds the
 * long poll until `stop`, which answers 410 as Nimbus does), and records what the runtime
 * posts back. It also keeps what has arrived so far of each response body, and serves it
 * to the function on a test-only route, `GET /test/received/{id}?bytes=N`, which answers
 * once at least N bytes have arrived: a streaming fixture waits on it to know that its
 * first chunk reached the server before it writes the next.
 */
async function startRuntimeApi(invocations, { endAfterAnswer = false } = {}) {
  const queue = [...invocations];
  const state = {
    nexts: 0,
    connections: 0,
    answers: new Map(),
    received: new Map(),
    initErrors: [],
    parked: [],
    waiters: [],
  };
  const changed = () => {
    for (const waiter of [...state.waiters]) {
      if (waiter.ready()) {
        state.waiters.splice(state.waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };
  /** Resolves once `ready()` holds (checked after every request and every body chunk). */
  const until = (ready) => {
    if (ready()) return Promise.resolve();
    return new Promise((resolve) => state.waiters.push({ ready, resolve }));
  };
  const server = http.createServer((req, res) => {
    if (req.socket.ending) {
      // A request that crossed the close on the wire: a closed server never sees it.
      req.socket.destroy();
      return;
    }
    const url = req.url;
    const response = /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/response$/.exec(url);
    const chunks = [];
    req.on('data', (chunk) => {
      chunks.push(chunk);
      if (req.method === 'POST' && response) {
        state.received.set(decodeURIComponent(response[1]), Buffer.concat(chunks));
        changed();
      }
    });
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const progress = /^\/test\/received\/([^/?]+)\?bytes=(\d+)$/.exec(url);
      if (req.method === 'GET' && progress) {
        const id = decodeURIComponent(progress[1]);
        const received = () => state.received.get(id) ?? Buffer.alloc(0);
        until(() => received().length >= Number(progress[2])).then(() => res.end(received()));
        return;
      }
      if (req.method === 'GET' && url === '/2018-06-01/runtime/invocation/next') {
        state.nexts += 1;
        const inv = queue.shift();
        if (inv === undefined) {
          state.parked.push(res);
        } else {
          sendEvent(res, inv);
        }
        changed();
        return;
      }
      const text = raw.toString('utf8');
      let json;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined; // Assertions on `json` then fail with the text in their message.
      }
      const record = { raw, text, json, headers: req.headers, trailers: req.trailers };
      let match;
      if (req.method === 'POST' && url === '/2018-06-01/runtime/init/error') {
        state.initErrors.push(record);
      } else if (
        req.method === 'POST' &&
        (match = /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/.exec(url))
      ) {
        const id = decodeURIComponent(match[1]);
        if (state.answers.has(id)) {
          res.writeHead(403).end();
          return;
        }
        state.answers.set(id, { kind: match[2], ...record });
      } else {
        res.writeHead(404).end();
        return;
      }
      if (endAfterAnswer) {
        // Close the connection once the answer is out, without announcing it (no
        // `Connection: close`), as a server whose idle timeout ran out would.
        res.on('finish', () => {
          req.socket.ending = true;
          req.socket.end();
        });
      }
      res.writeHead(202, { 'content-type': 'application/json' }).end('{"status":"OK"}');
      changed();
    });
  });
  server.on('connection', () => (state.connections += 1));
  // Kept connections stay open however slow the machine: tests count them.
  server.keepAliveTimeout = 0;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${server.address().port}`,
    state,
    until,
    /** Ends held long polls with 410 (the instance is stopping) and closes. */
    async stop() {
      for (const res of state.parked) {
        res.writeHead(410, { 'content-type': 'application/json' });
        res.end('{"errorType":"Runtime.Stopping","errorMessage":"the instance is stopping"}');
      }
      state.parked = [];
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * Answers GET .../next with invocation `inv`. Its `delivery` says how the body is framed:
 * `length` (Content-Length, the default), `chunked` (two chunks, split inside a UTF-8
 * character, the second sent a little later) or `close` (neither: the body ends when the
 * server closes the connection).
 */
function sendEvent(res, inv) {
  const body = Buffer.from(inv.rawBody ?? JSON.stringify(inv.event), 'utf8');
  const headers = { 'content-type': 'application/json', ...inv.headers };
  if (inv.delivery === 'chunked') {
    res.writeHead(200, headers);
    const wide = body.findIndex((byte) => byte >= 0x80);
    const split = wide > 0 ? wide + 1 : Math.floor(body.length / 2);
    res.write(body.subarray(0, split));
    setTimeout(() => res.end(body.subarray(split)), 10);
  } else if (inv.delivery === 'close') {
    res.useChunkedEncodingByDefault = false;
    res.shouldKeepAlive = false;
    res.writeHead(200, { ...headers, connection: 'close' });
    res.end(body);
  } else {
    res.writeHead(200, headers).end(body);
  }
}

/** An invocation for the fake API: `event` as the body, Lambda's headers around it. */
function invocation(
  event,
  { id = randomUUID(), deadlineMs = Date.now() + 30_000, headers = {}, rawBody, delivery = 'length' } = {},
) {
  return {
    id,
    event,
    rawBody,
    delivery,
    headers: {
      'lambda-runtime-aws-request-id': id,
      'lambda-runtime-deadline-ms': String(deadlineMs),
      'lambda-runtime-invoked-function-arn': ARN,
      ...headers,
    },
  };
}

function withTimeout(promise, what, output) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${what}\nstdout:\n${output.stdout}\nstderr:\n${output.stderr}`)),
      PATIENCE_MS,
    );
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Runs fixture `fixture` with handler `handler` through `invocations`, and returns what
 * the fake API received and what the shim printed. By default it waits until every
 * invocation was answered and the runtime asked for the next one, then stops the
 * instance; with `expectExit` it waits for the shim to exit by itself instead.
 */
async function run(
  fixture,
  handler,
  invocations = [invocation({})],
  { env = {}, expectExit = false, endAfterAnswer = false, closeOutput = false } = {},
) {
  const dir = materialise(fixture);
  const api = await startRuntimeApi(invocations, { endAfterAnswer });
  const childEnv = {
    PATH: process.env.PATH,
    AWS_LAMBDA_RUNTIME_API: api.address,
    _HANDLER: handler,
    LAMBDA_TASK_ROOT: dir,
    AWS_LAMBDA_FUNCTION_NAME: 'fixture-fn',
    AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
    AWS_LAMBDA_LOG_GROUP_NAME: '/aws/lambda/fixture-fn',
    AWS_LAMBDA_LOG_STREAM_NAME: '2026/01/01/[$LATEST]0123456789abcdef',
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: ENDPOINT,
    AWS_ACCESS_KEY_ID: 'nimbus',
    AWS_SECRET_ACCESS_KEY: 'nimbus',
    AWS_SESSION_TOKEN: 'nimbus',
  };
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) delete childEnv[key];
    else childEnv[key] = value;
  }
  const child = spawn(process.execPath, [BOOTSTRAP], { cwd: dir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = { stdout: '', stderr: '' };
  if (closeOutput) {
    // Nobody reads the shim's output any more: its writes fail with EPIPE.
    child.stdout.destroy();
    child.stderr.destroy();
  } else {
    child.stdout.setEncoding('utf8').on('data', (text) => (output.stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text) => (output.stderr += text));
  }
  const closed = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  let exit;
  try {
    if (expectExit) {
      exit = await withTimeout(closed, 'the shim to exit', output);
    } else {
      const { state } = api;
      const allAnswered = () =>
        invocations.every((inv) => state.answers.has(inv.id)) && state.nexts > invocations.length;
      await withTimeout(
        Promise.race([api.until(allAnswered), closed.then((e) => assert.fail(`shim exited early: ${JSON.stringify(e)}`))]),
        'every invocation to be answered',
        output,
      );
      await api.stop();
      exit = await withTimeout(closed, 'the shim to exit after a 410 from invocation/next', output);
    }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await api.stop().catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const answers = invocations.map((inv) => api.state.answers.get(inv.id));
  return {
    answers,
    answer: answers[0],
    initErrors: api.state.initErrors,
    nexts: api.state.nexts,
    connections: api.state.connections,
    exit,
    stdout: output.stdout,
    stderr: output.stderr,
    logs: output.stdout
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => {
        const m = LOG_LINE.exec(line);
        return m ? { time: m[1], requestId: m[2], level: m[3], message: m[4], line } : { line };
      }),
  };
}

function assertResponse(answer, expected) {
  assert.ok(answer, 'the invocation was not answered');
  assert.equal(answer.kind, 'response', `expected a response, got ${answer.kind}: ${answer.text}`);
  assert.deepEqual(answer.json, expected);
}

function assertError(answer, errorType, errorMessage) {
  assert.ok(answer, 'the invocation was not answered');
  assert.equal(answer.kind, 'error', `expected an error, got ${answer.kind}: ${answer.text}`);
  assert.equal(answer.json.errorType, errorType);
  assert.equal(answer.headers['lambda-runtime-function-error-type'], errorType);
  if (errorMessage instanceof RegExp) assert.match(answer.json.errorMessage, errorMessage);
  else if (errorMessage !== undefined) assert.equal(answer.json.errorMessage, errorMessage);
  assert.ok(Array.isArray(answer.json.trace), 'trace is an array');
  assert.deepEqual(Object.keys(answer.json).sort(), ['errorMessage', 'errorType', 'trace']);
}

const STREAM_TRAILER = 'Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body';

/** Checks that `answer` came as a streaming response (chunked, trailers announced). */
function assertStreamed(answer, contentType) {
  assert.ok(answer, 'the invocation was not answered');
  assert.equal(answer.kind, 'response', `expected a streaming response, got ${answer.kind}: ${answer.text}`);
  assert.equal(answer.headers['lambda-runtime-function-response-mode'], 'streaming');
  assert.equal(answer.headers['transfer-encoding'], 'chunked');
  assert.equal(answer.headers['content-length'], undefined);
  assert.equal(answer.headers.trailer, STREAM_TRAILER);
  assert.equal(answer.headers['content-type'], contentType);
}

/** A streaming response that succeeded: `body` (a string, or a Buffer to compare bytes). */
function assertStreamedOk(answer, contentType, body) {
  assertStreamed(answer, contentType);
  assert.deepEqual(answer.trailers, {}, 'a successful stream has no error trailers');
  if (Buffer.isBuffer(body)) assert.deepEqual(answer.raw, body);
  else assert.equal(answer.text, body);
}

/** A streaming response that failed; returns the error document decoded from the trailer. */
function assertStreamedError(answer, errorType, errorMessage, contentType = 'application/octet-stream') {
  assertStreamed(answer, contentType);
  assert.equal(answer.trailers['lambda-runtime-function-error-type'], errorType);
  const body = answer.trailers['lambda-runtime-function-error-body'];
  assert.match(body, /^[A-Za-z0-9+/]+={0,2}$/, 'the error body trailer is base64');
  const doc = JSON.parse(Buffer.from(body, 'base64').toString('utf8'));
  assert.deepEqual(Object.keys(doc).sort(), ['errorMessage', 'errorType', 'trace']);
  assert.equal(doc.errorType, errorType);
  assert.equal(doc.errorMessage, errorMessage);
  assert.ok(Array.isArray(doc.trace), 'trace is an array');
  return doc;
}

async function runInitError(fixture, handler) {
  const result = await run(fixture, handler, [invocation({})], { expectExit: true });
  assert.equal(result.initErrors.length, 1, `one init error expected\n${result.stdout}${result.stderr}`);
  assert.notEqual(result.exit.code, 0, 'the shim exits non-zero after an init error');
  assert.equal(result.nexts, 0, 'a runtime that failed to initialise never asks for an invocation');
  const [error] = result.initErrors;
  return { ...result, error, doc: error.json };
}

// ---------------------------------------------------------------------------------------
// Tests.

describe('the Runtime API loop', { concurrency: true }, () => {
  test('answers invocations one after another, keeping module state, and polls again', async () => {
    const first = invocation({ n: 1 });
    const second = invocation({ n: 2 });
    const r = await run('basics', 'index.echo', [first, second]);
    assertResponse(r.answers[0], { echo: { n: 1 }, invocations: 1 });
    assertResponse(r.answers[1], { echo: { n: 2 }, invocations: 2 });
    assert.equal(r.answers[0].headers['content-type'], 'application/json');
    assert.equal(r.nexts, 3, 'two invocations taken, then a third long poll');
  });

  test('exits cleanly when invocation/next answers 410 (the instance is stopping)', async () => {
    const r = await run('basics', 'index.echo', [], {});
    assert.equal(r.nexts, 1);
    assert.deepEqual(r.exit, { code: 0, signal: null });
  });

  test('an event body that is not JSON is the invocation error', async () => {
    const bad = invocation(undefined, { rawBody: '{not json' });
    const r = await run('basics', 'index.echo', [bad]);
    assertError(r.answer, 'SyntaxError');
  });

  test('bodies are UTF-8 JSON both ways', async () => {
    const r = await run('basics', 'index.unicode', [invocation({ text: 'héllo wörld ✓ 🎉' })]);
    assertResponse(r.answer, { got: 'héllo wörld ✓ 🎉', reply: 'grüße, 世界 ✓ 🎉' });
    assert.equal(r.answer.raw.toString('utf8'), '{"got":"héllo wörld ✓ 🎉","reply":"grüße, 世界 ✓ 🎉"}');
    assert.equal(Number(r.answer.headers['content-length']), r.answer.raw.length);
  });
});

describe('the Runtime API client', { concurrency: true }, () => {
  test('keeps one connection for every request', async () => {
    const invocations = [1, 2, 3].map((n) => invocation({ n }));
    const r = await run('basics', 'index.echo', invocations);
    invocations.forEach((_, i) => assertResponse(r.answers[i], { echo: { n: i + 1 }, invocations: i + 1 }));
    assert.equal(r.connections, 1);
  });

  test('reads event bodies sent chunked or ended by the close of the connection', async () => {
    const text = 'grüße '.repeat(2000);
    const chunked = invocation({ n: 1, text }, { delivery: 'chunked' });
    const closing = invocation({ n: 2, text }, { delivery: 'close' });
    const plain = invocation({ n: 3 });
    const r = await run('basics', 'index.echo', [chunked, closing, plain]);
    assertResponse(r.answers[0], { echo: { n: 1, text }, invocations: 1 });
    assertResponse(r.answers[1], { echo: { n: 2, text }, invocations: 2 });
    assertResponse(r.answers[2], { echo: { n: 3 }, invocations: 3 });
    assert.ok(r.connections >= 2, 'a body that ends with the connection needs a new one after it');
  });

  test('opens a new connection when the Runtime API closes the kept one', async () => {
    const invocations = [1, 2, 3].map((n) => invocation({ n }));
    const r = await run('basics', 'index.echo', invocations, { endAfterAnswer: true });
    invocations.forEach((_, i) => assertResponse(r.answers[i], { echo: { n: i + 1 }, invocations: i + 1 }));
    assert.equal(r.nexts, 4);
    assert.ok(r.connections >= 4, `each answer ended its connection, yet ${r.connections} were opened`);
  });
});

describe('the context object', { concurrency: true }, () => {
  test('carries the function, the invocation headers and the time left', async () => {
    const deadlineMs = Date.now() + 30_000;
    const withEverything = invocation(
      {},
      {
        deadlineMs,
        headers: {
          'lambda-runtime-trace-id': 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1',
          'lambda-runtime-client-context': JSON.stringify({ client: { app_title: 'nimbus' }, custom: { k: 'v' } }),
          'lambda-runtime-cognito-identity': JSON.stringify({ cognitoIdentityId: 'id-1', cognitoIdentityPoolId: 'pool-1' }),
        },
      },
    );
    const pastDeadline = invocation({}, { deadlineMs: Date.now() - 5_000 });
    const r = await run('basics', 'index.context', [withEverything, pastDeadline]);
    const first = r.answers[0].json;
    const { remaining, ...rest } = first;
    assert.deepEqual(rest, {
      awsRequestId: withEverything.id,
      functionName: 'fixture-fn',
      functionVersion: '$LATEST',
      memoryLimitInMB: '256',
      invokedFunctionArn: ARN,
      logGroupName: '/aws/lambda/fixture-fn',
      logStreamName: '2026/01/01/[$LATEST]0123456789abcdef',
      identity: { cognitoIdentityId: 'id-1', cognitoIdentityPoolId: 'pool-1' },
      clientContext: { client: { app_title: 'nimbus' }, custom: { k: 'v' } },
      callbackWaitsForEmptyEventLoop: true,
      traceId: 'Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1',
    });
    assert.ok(remaining > 0 && remaining <= 30_000, `getRemainingTimeInMillis() = ${remaining}`);
    const second = r.answers[1].json;
    assert.ok(second.remaining < 0, `a deadline in the past leaves ${second.remaining} ms`);
    assert.equal(second.traceId, 'absent', 'the trace id of the previous invocation is cleared');
    assert.equal(second.identity, 'absent');
    assert.equal(second.clientContext, 'absent');
    assert.equal(second.awsRequestId, pastDeadline.id);
  });

  test('a client context that is not JSON is the invocation error', async () => {
    const bad = invocation({}, { headers: { 'lambda-runtime-client-context': '{nope' } });
    const r = await run('basics', 'index.context', [bad]);
    assertError(r.answer, 'Error', /^Cannot parse ClientContext as json: SyntaxError/);
  });
});

describe('handler styles', { concurrency: true }, () => {
  test('an async handler answers with what it returns', async () => {
    const r = await run('basics', 'index.echo', [invocation({ hello: 'world' })]);
    assertResponse(r.answer, { echo: { hello: 'world' }, invocations: 1 });
  });

  test('a non-async handler returning a promise answers when it resolves', async () => {
    const r = await run('basics', 'index.promise', [invocation({ value: 7 })]);
    assertResponse(r.answer, { fromPromise: 7 });
  });

  test('undefined becomes JSON null', async () => {
    const r = await run('basics', 'index.nothing');
    assert.equal(r.answer.kind, 'response');
    assert.equal(r.answer.text, 'null');
  });

  test('a callback handler that returns undefined is answered when it calls back', async () => {
    const r = await run('callbacks', 'index.later');
    assertResponse(r.answer, 'called back later');
  });

  test('callbackWaitsForEmptyEventLoop (default true) answers once pending timers have run', async () => {
    const r = await run('callbacks', 'index.waits');
    assertResponse(r.answer, { timerFired: true });
  });

  test('callbackWaitsForEmptyEventLoop = false answers at once, and the next invocation still runs', async () => {
    const r = await run('callbacks', 'index.noWait', [invocation({}), invocation({})]);
    assertResponse(r.answers[0], { timerFired: false });
    assertResponse(r.answers[1], { timerFired: false });
  });

  test('callback(error) is reported at once, without waiting for the event loop', async () => {
    const r = await run('callbacks', 'index.callbackError');
    assertError(r.answer, 'Error', 'before the timer');
  });

  test('callback with a string error reports errorType "string"', async () => {
    const r = await run('callbacks', 'index.callbackString');
    assertError(r.answer, 'string', 'plain string error');
    assert.deepEqual(r.answer.json.trace, []);
  });

  test('context.succeed answers at once, without waiting for the event loop', async () => {
    const r = await run('callbacks', 'index.succeed');
    assertResponse(r.answer, { timerFired: false });
  });

  test('context.fail reports the error; with no argument, Lambda\'s "handled"', async () => {
    const failed = await run('callbacks', 'index.fail');
    assertError(failed.answer, 'Error', 'failed through context');
    const bare = await run('callbacks', 'index.failWithNothing');
    assertError(bare.answer, 'string', 'handled');
  });

  test('context.done answers with a result or an error', async () => {
    const ok = await run('callbacks', 'index.doneOk');
    assertResponse(ok.answer, { done: true });
    const bad = await run('callbacks', 'index.doneError');
    assertError(bad.answer, 'RangeError', 'done with an error');
  });

  test('a value returned by a non-async handler is ignored, as Lambda does: null once the loop empties', async () => {
    const r = await run('callbacks', 'index.syncReturn');
    assert.equal(r.answer.kind, 'response');
    assert.equal(r.answer.text, 'null');
  });

  test('a callback handler that never calls back answers null once the event loop empties', async () => {
    const r = await run('callbacks', 'index.neverCallsBack');
    assert.equal(r.answer.kind, 'response');
    assert.equal(r.answer.text, 'null');
  });

  test('only the first answer counts; later ones are logged and dropped', async () => {
    const id = randomUUID();
    const r = await run('callbacks', 'index.twice', [invocation({}, { id })]);
    assertResponse(r.answer, 'first');
    const complaint = r.logs.find((l) => l.level === 'ERROR' && /already been reported as done/.test(l.message));
    assert.ok(complaint, r.stdout);
    assert.equal(complaint.requestId, id);
  });
});

describe('invocation errors', { concurrency: true }, () => {
  test('a thrown Error is reported with its type, message and stack lines, and logged', async () => {
    const id = randomUUID();
    const r = await run('errors', 'errors.throwsError', [invocation({}, { id })]);
    assertError(r.answer, 'Error', 'boom');
    // A handled failure keeps the process: no exit is announced.
    assert.equal(r.answer.headers['nimbus-runtime-exiting'], undefined);
    const { trace } = r.answer.json;
    assert.equal(trace[0], 'Error: boom');
    assert.ok(trace.some((line) => /^\s+at .*errors\.js:\d+:\d+/.test(line)), trace.join('\n'));
    const logged = r.logs.find((l) => l.level === 'ERROR' && l.message.startsWith('Invoke Error \t'));
    assert.ok(logged, r.stdout);
    assert.equal(logged.requestId, id);
    const doc = JSON.parse(logged.message.slice('Invoke Error \t'.length));
    assert.equal(doc.errorType, 'Error');
    assert.equal(doc.errorMessage, 'boom');
    assert.deepEqual(doc.stack, trace);
  });

  test('a custom error class reports its name; its own fields appear in the log', async () => {
    const r = await run('errors', 'errors.throwsCustom');
    assertError(r.answer, 'ValidationError', 'email is required');
    assert.equal(r.answer.json.trace[0], 'ValidationError: email is required');
    const logged = r.logs.find((l) => l.message?.startsWith('Invoke Error'));
    assert.equal(JSON.parse(logged.message.split('\t')[1]).field, 'email');
  });

  test('a thrown string is reported as errorType "string" with no trace', async () => {
    const r = await run('errors', 'errors.throwsString');
    assertError(r.answer, 'string', 'thrown string');
    assert.deepEqual(r.answer.json.trace, []);
  });

  test('a thrown plain object is reported by its typeof', async () => {
    const r = await run('errors', 'errors.rejectsObject');
    assertError(r.answer, 'object', '[object Object]');
  });

  test('an error name outside ASCII is percent-encoded in the header, kept in the body', async () => {
    const r = await run('errors', 'errors.unicodeName');
    assert.equal(r.answer.kind, 'error');
    assert.equal(r.answer.json.errorType, 'Fehler✗');
    assert.equal(r.answer.headers['lambda-runtime-function-error-type'], 'Fehler%E2%9C%97');
  });

  test('an answer that cannot be serialised (circular, BigInt) is reported as Runtime.JSONStringifyError', async () => {
    const circular = await run('errors', 'errors.circular');
    assertError(circular.answer, 'Runtime.JSONStringifyError', 'Unable to stringify response body');
    const bigint = await run('errors', 'errors.bigint');
    assertError(bigint.answer, 'Runtime.JSONStringifyError', 'Unable to stringify response body');
  });

  test('an unhandled rejection is the invocation error, then the process exits 128', async () => {
    const id = randomUUID();
    const r = await run('errors', 'errors.unhandledRejection', [invocation({}, { id })], { expectExit: true });
    const answer = r.answers[0];
    assertError(answer, 'Runtime.UnhandledPromiseRejection', 'Error: nobody caught this');
    assert.equal(answer.json.trace[0], 'Runtime.UnhandledPromiseRejection: Error: nobody caught this');
    assert.ok(answer.json.trace.some((line) => /errors\.js:\d+/.test(line)), answer.json.trace.join('\n'));
    assert.deepEqual(r.exit, { code: 128, signal: null });
    // The host is told the process is ending, so the instance gets no other invocation.
    assert.equal(answer.headers['nimbus-runtime-exiting'], '1');
    const logged = r.logs.find((l) => l.message?.startsWith('Unhandled Promise Rejection'));
    assert.ok(logged && logged.requestId === id && logged.level === 'ERROR', r.stdout);
  });

  test('an uncaught exception is the invocation error, then the process exits 129', async () => {
    const r = await run('errors', 'errors.uncaughtException', [invocation({})], { expectExit: true });
    assertError(r.answers[0], 'TypeError', 'thrown from a timer');
    assert.equal(r.answers[0].headers['nimbus-runtime-exiting'], '1');
    assert.deepEqual(r.exit, { code: 129, signal: null });
    assert.ok(r.logs.some((l) => l.level === 'ERROR' && l.message.startsWith('Uncaught Exception')), r.stdout);
  });
});

describe('handler loading', { concurrency: true }, () => {
  test('an .mjs file is loaded as an ES module (top-level await included)', async () => {
    const r = await run('esm-mjs', 'app.handler');
    assertResponse(r.answer, { greeting: 'hello from app.mjs', esm: true, url: true });
  });

  test('a .js file under package.json "type": "module" is loaded as an ES module', async () => {
    const r = await run('esm-type-module', 'index.handler');
    assertResponse(r.answer, { ready: true, esm: true, url: true });
  });

  test('a .cjs file is loaded as CommonJS even under "type": "module"', async () => {
    const r = await run('esm-type-module', 'legacy.handler');
    assertResponse(r.answer, { commonjs: true });
  });

  test('a module path with directories (one with a dot) and a nested export path', async () => {
    const r = await run('nested', 'lib.v2/handlers/users.api.v1.create', [invocation({ name: 'ada' })]);
    assertResponse(r.answer, { created: 'ada', from: 'lib.v2/handlers/users.js' });
  });

  test('a directory module resolves through its index.js', async () => {
    const r = await run('nested', 'app.handler');
    assertResponse(r.answer, { from: 'app/index.js' });
  });
});

describe('initialisation errors go to init/error and end the process', { concurrency: true }, () => {
  test('a module that does not exist: Runtime.ImportModuleError', async () => {
    const { doc, error } = await runInitError('basics', 'missing.handler');
    assert.equal(doc.errorType, 'Runtime.ImportModuleError');
    assert.equal(error.headers['lambda-runtime-function-error-type'], 'Runtime.ImportModuleError');
    assert.match(doc.errorMessage, /^Error: Cannot find module 'missing'/);
  });

  test('a dependency that is not installed: Runtime.ImportModuleError', async () => {
    const { doc } = await runInitError('init-missing-dependency', 'index.handler');
    assert.equal(doc.errorType, 'Runtime.ImportModuleError');
    assert.match(doc.errorMessage, /^Error: Cannot find module 'nimbus-package-that-is-not-installed'/);
  });

  test('an export that is missing, or not a function: Runtime.HandlerNotFound', async () => {
    const missing = await runInitError('basics', 'index.nope');
    assert.equal(missing.doc.errorType, 'Runtime.HandlerNotFound');
    assert.equal(missing.doc.errorMessage, 'index.nope is undefined or not exported');
    const notFunction = await runInitError('basics', 'index.notAFunction');
    assert.equal(notFunction.doc.errorType, 'Runtime.HandlerNotFound');
    assert.equal(notFunction.doc.errorMessage, 'index.notAFunction is not a function');
  });

  test('a syntax error, CommonJS or ES module: Runtime.UserCodeSyntaxError', async () => {
    const cjs = await runInitError('init-syntax-error', 'index.handler');
    assert.equal(cjs.doc.errorType, 'Runtime.UserCodeSyntaxError');
    assert.match(cjs.doc.errorMessage, /^SyntaxError: /);
    assert.ok(cjs.doc.trace.some((line) => line.includes('index.js')), cjs.doc.trace.join('\n'));
    const esm = await runInitError('init-syntax-error', 'broken.handler');
    assert.equal(esm.doc.errorType, 'Runtime.UserCodeSyntaxError');
    assert.match(esm.doc.errorMessage, /^SyntaxError: /);
  });

  test('an error thrown while loading keeps its own type, and is logged', async () => {
    const r = await runInitError('init-throws', 'index.handler');
    assert.equal(r.doc.errorType, 'ConfigError');
    assert.equal(r.doc.errorMessage, 'TABLE_NAME is not set');
    assert.equal(r.doc.trace[0], 'ConfigError: TABLE_NAME is not set');
    const logged = r.logs.find((l) => l.message?.startsWith('Uncaught Exception'));
    assert.ok(logged && logged.requestId === 'undefined' && logged.level === 'ERROR', r.stdout);
  });

  test('a top-level await that never settles fails initialisation with exit code 13', async () => {
    const r = await runInitError('init-unsettled', 'index.handler');
    assert.equal(r.doc.errorType, 'Runtime.ExitError');
    assert.match(r.doc.errorMessage, /top-level await of the module for index\.handler never settles/);
    assert.equal(r.exit.code, 13);
  });

  test('a handler string without an export, or with "..": Runtime.MalformedHandlerName', async () => {
    const bare = await runInitError('basics', 'index');
    assert.equal(bare.doc.errorType, 'Runtime.MalformedHandlerName');
    assert.equal(bare.doc.errorMessage, 'Bad handler');
    const escaping = await runInitError('basics', '../basics/index.echo');
    assert.equal(escaping.doc.errorType, 'Runtime.MalformedHandlerName');
  });
});

describe('console output', { concurrency: true }, () => {
  test("uses Lambda's format: time, request id (\"undefined\" outside invocations), level, message", async () => {
    const first = invocation({});
    const second = invocation({});
    const r = await run('console', 'index.handler', [first, second]);
    assertResponse(r.answers[0], first.id);
    assert.ok(
      r.logs.every((l) => l.level !== undefined),
      `every stdout line is a log record:\n${r.stdout}`,
    );
    assert.equal(r.stderr, '');
    const loading = r.logs.find((l) => l.message === 'loading the module');
    assert.equal(loading.requestId, 'undefined');
    assert.equal(loading.level, 'INFO');
    assert.ok(!Number.isNaN(Date.parse(loading.time)));
    for (const inv of [first, second]) {
      const mine = r.logs.filter((l) => l.requestId === inv.id).map((l) => [l.level, l.message]);
      assert.deepEqual(mine, [
        ['INFO', 'log answer=42'],
        ['INFO', 'info { nested: { value: true } }'],
        ['WARN', 'warn'],
        ['ERROR', 'error'],
        ['DEBUG', 'debug'],
        ['TRACE', 'trace'],
        ['INFO', 'first line\rsecond line'],
      ]);
    }
  });

  test('output to a closed pipe is dropped without crashing the runtime', async () => {
    const first = invocation({});
    const second = invocation({});
    const r = await run('console', 'index.handler', [first, second], { closeOutput: true });
    assertResponse(r.answers[0], first.id);
    assertResponse(r.answers[1], second.id);
    assert.deepEqual(r.exit, { code: 0, signal: null });
  });
});

describe('JSON log format', { concurrency: true }, () => {
  test('AWS_LAMBDA_LOG_FORMAT=JSON prints one JSON object per record, filtered by AWS_LAMBDA_LOG_LEVEL', async () => {
    const inv = invocation({});
    const r = await run('console', 'index.handler', [inv], {
      env: { AWS_LAMBDA_LOG_FORMAT: 'JSON', AWS_LAMBDA_LOG_LEVEL: 'INFO' },
    });
    assertResponse(r.answers[0], inv.id);
    const records = r.stdout
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line));
    const loading = records.find((l) => l.message === 'loading the module');
    assert.equal(loading.requestId, undefined);
    assert.ok(!Number.isNaN(Date.parse(loading.timestamp)));
    const mine = records.filter((l) => l.requestId === inv.id).map((l) => [l.level, l.message]);
    assert.deepEqual(mine, [
      ['INFO', 'log answer=42'],
      ['INFO', 'info { nested: { value: true } }'],
      ['WARN', 'warn'],
      ['ERROR', 'error'],
      ['INFO', 'first line\nsecond line'],
    ]);
  });

  test('a logged error carries its type, message and stack', async () => {
    const inv = invocation({});
    const r = await run('errors', 'errors.throwsCustom', [inv], { env: { AWS_LAMBDA_LOG_FORMAT: 'JSON' } });
    const records = r.stdout.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line));
    const invokeError = records.find((l) => l.message.startsWith('Invoke Error'));
    assert.ok(invokeError, r.stdout);
    assert.equal(invokeError.level, 'ERROR');
    assert.equal(invokeError.requestId, inv.id);
  });
});

describe('response streaming', { concurrency: true }, () => {
  test('each write reaches the Runtime API as it is made, before the handler writes the next', async () => {
    // The handler writes its second chunk only once the fake API says it holds the first:
    // a shim that buffered the body would never get there, and the test would time out.
    const r = await run('streaming', 'index.incremental');
    assertStreamedOk(r.answer, 'application/octet-stream', 'first chunk\nthen the server had "first chunk\\n"\n');
  });

  test('uses the streaming mode, application/octet-stream by default, and sends bytes as written', async () => {
    const r = await run('streaming', 'index.octets');
    assertStreamedOk(r.answer, 'application/octet-stream', Buffer.from([0x00, 0xff, 0xfe, 0x80]));
    assert.equal(r.answer.headers['lambda-runtime-function-error-type'], undefined);
  });

  test('setContentType sets the Content-Type; after the first write it throws', async () => {
    const r = await run('streaming', 'index.contentType');
    const refusal = 'the content type of a response stream must be set before the first write';
    assertStreamedOk(r.answer, 'text/plain; charset=utf-8', `grüße (a late setContentType was refused: ${refusal})`);
  });

  test('HttpResponseStream.from writes a JSON prelude, 8 NUL bytes, then the HTTP body', async () => {
    const r = await run('streaming', 'index.httpResponse');
    const metadata = {
      statusCode: 201,
      headers: { 'content-type': 'text/plain', 'x-custom': 'yes' },
      cookies: ['a=1; Secure', 'b=2'],
    };
    const prelude = Buffer.from(JSON.stringify(metadata));
    const expected = Buffer.concat([prelude, Buffer.alloc(8), Buffer.from('hello world')]);
    assertStreamedOk(r.answer, 'application/vnd.awslambda.http-integration-response', expected);
    const end = r.answer.raw.indexOf(Buffer.alloc(8));
    assert.deepEqual(JSON.parse(r.answer.raw.subarray(0, end).toString('utf8')), metadata);
    assert.equal(r.answer.raw.subarray(end + 8).toString('utf8'), 'hello world');
  });

  test('pipeline() into the response stream', async () => {
    const r = await run('streaming', 'index.pipelined');
    assertStreamedOk(r.answer, 'application/octet-stream', 'one two three');
  });

  test('a handler that returns while its pipe still writes: the response ends with the pipe', async () => {
    const r = await run('streaming', 'index.pipeNotAwaited');
    assertStreamedOk(r.answer, 'application/octet-stream', 'piped later');
  });

  test('gets the context object; awslambda is a global before the module loads', async () => {
    const inv = invocation({}, { headers: { 'lambda-runtime-trace-id': 'Root=1-5759e988-bd862e3fe1be46a994272793' } });
    const r = await run('streaming', 'index.context', [inv]);
    assertStreamed(r.answer, 'application/octet-stream');
    assert.deepEqual(r.answer.json, {
      awsRequestId: inv.id,
      functionName: 'fixture-fn',
      invokedFunctionArn: ARN,
      remaining: true,
      traceId: 'Root=1-5759e988-bd862e3fe1be46a994272793',
      globalsAtLoad: { awslambda: 'object', streamifyResponse: 'function', from: 'function' },
    });
  });

  test('an ES module handler streams too', async () => {
    const r = await run('streaming', 'esm.handler', [invocation({ name: 'ada' })]);
    assertStreamedOk(r.answer, 'text/plain', 'from an ES module: ada');
  });

  test('a throw after a write ends the response with the error in its trailers, and is logged', async () => {
    const id = randomUUID();
    const r = await run('streaming', 'index.throwsAfterWrite', [invocation({}, { id })]);
    const doc = assertStreamedError(r.answer, 'StreamError', 'broke mid-stream');
    assert.equal(r.answer.text, 'partial body');
    assert.equal(doc.trace[0], 'StreamError: broke mid-stream');
    assert.ok(doc.trace.some((line) => /index\.js:\d+/.test(line)), doc.trace.join('\n'));
    const logged = r.logs.find((l) => l.level === 'ERROR' && l.message.startsWith('Invoke Error \t'));
    assert.ok(logged && logged.requestId === id, r.stdout);
    assert.equal(JSON.parse(logged.message.slice('Invoke Error \t'.length)).errorType, 'StreamError');
  });

  test('a failure before anything was written is reported the same way, on an empty stream', async () => {
    const r = await run('streaming', 'index.throwsBeforeWrite');
    const doc = assertStreamedError(r.answer, 'string', 'nothing written');
    assert.equal(r.answer.raw.length, 0);
    assert.deepEqual(doc.trace, []);
  });

  test('a rejection after the stream ended is still reported: the response ends with the outcome', async () => {
    const r = await run('streaming', 'index.endsThenRejects');
    assertStreamedError(r.answer, 'TypeError', 'rejected after the end');
    assert.equal(r.answer.text, 'complete body');
  });

  test('an error from a pipeline source is the invocation error', async () => {
    const r = await run('streaming', 'index.pipelineFails');
    assertStreamedError(r.answer, 'RangeError', 'the source failed');
    assert.equal(r.answer.text, 'from the source ');
  });

  test('context.fail ends the response with the error', async () => {
    const r = await run('streaming', 'index.contextFail');
    assertStreamedError(r.answer, 'Error', 'failed through context');
    assert.equal(r.answer.text, 'some ');
  });

  test('an uncaught exception ends the response with the error, then the process exits 129', async () => {
    const r = await run('streaming', 'index.uncaughtException', [invocation({})], { expectExit: true });
    assertStreamedError(r.answers[0], 'TypeError', 'thrown from a timer');
    assert.equal(r.answers[0].text, 'before the crash');
    assert.equal(r.answers[0].trailers['nimbus-runtime-exiting'], '1');
    assert.deepEqual(r.exit, { code: 129, signal: null });
  });

  test('invocations stream one after another; a failed one does not affect the next', async () => {
    const invs = [invocation({ text: 'a' }), invocation({ text: 'b', fail: true }), invocation({ text: 'c' })];
    const r = await run('streaming', 'index.sequence', invs);
    assertStreamedOk(r.answers[0], 'application/octet-stream', 'a');
    assertStreamedError(r.answers[1], 'Error', 'failed at b');
    assert.equal(r.answers[1].text, 'b');
    assertStreamedOk(r.answers[2], 'application/octet-stream', 'c');
    assert.equal(r.nexts, 4, 'three invocations taken, then a fourth long poll');
  });

  test('a plain handler still answers with one buffered JSON response, even beside its streamified twin', async () => {
    const inv = invocation({});
    const plain = await run('streaming', 'index.reply', [inv]);
    assertResponse(plain.answer, { plain: true, awsRequestId: inv.id });
    assert.equal(plain.answer.headers['lambda-runtime-function-response-mode'], undefined);
    assert.equal(Number(plain.answer.headers['content-length']), plain.answer.raw.length);
    const streamed = await run('streaming', 'index.replyStreamed');
    assertStreamedOk(streamed.answer, 'application/octet-stream', 'streamed');
  });
});

describe('AWS SDK for JavaScript v2', { concurrency: true }, () => {
  test('is pointed at AWS_ENDPOINT_URL before user code loads, on the instance user code gets', async () => {
    const r = await run('aws-sdk-v2', 'index.handler');
    assertResponse(r.answer, { updatesWhenLoaded: 1, updates: [{ endpoint: ENDPOINT }], loads: 1 });
  });

  test('is the same instance for ES module user code', async () => {
    const r = await run('aws-sdk-v2', 'esm.handler');
    assertResponse(r.answer, { updates: [{ endpoint: ENDPOINT }], loads: 1 });
  });

  test('is left alone when AWS_ENDPOINT_URL is not set', async () => {
    const r = await run('aws-sdk-v2', 'index.handler', [invocation({})], { env: { AWS_ENDPOINT_URL: undefined } });
    assertResponse(r.answer, { updatesWhenLoaded: 0, updates: [], loads: 1 });
  });
});
