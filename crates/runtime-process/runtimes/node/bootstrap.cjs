// Nimbus's bootstrap for Node.js functions.
//
// Nimbus runs `node bootstrap.cjs` in the function's code directory. This file loads the
// handler named by `_HANDLER` and serves invocations over the AWS Lambda Runtime API at
// `AWS_LAMBDA_RUNTIME_API`, behaving like Lambda's managed Node.js runtime: the same
// handler styles (async, promise, callback, context.succeed/fail/done), the same context
// object, the same error documents and error types, the same console format. Node.js 18+
// built-ins only. See README.md beside this file for what it does and does not do.
//
// Start-up time is part of every cold start, so this file does as little as it can before
// the first invocation: it is CommonJS (an ES module entry point would start Node's ES
// module loader, which only ES module handlers need), it speaks HTTP/1.1 to the Runtime
// API itself over `node:net` instead of loading `node:http`, and it loads `node:util`,
// `node:url` and the process's stdout and stderr streams only when they are first used.

'use strict';

const fs = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');
const { Writable } = require('node:stream');

const SELF = __filename;
const API_PREFIX = '/2018-06-01/runtime';
// Lambda's exit codes for a runtime that dies on an unhandled rejection or exception.
const EXIT_UNHANDLED_REJECTION = 128;
const EXIT_UNCAUGHT_EXCEPTION = 129;
// Node's own exit code for a module whose top-level await never settles.
const EXIT_UNSETTLED_TOP_LEVEL_AWAIT = 13;

// ---------------------------------------------------------------------------------------
// Logging: console methods print `<ISO time>\t<request id>\t<LEVEL>\t<message>` on stdout,
// one record per line (newlines inside a message become '\r', as Lambda does on stdout).
// With AWS_LAMBDA_LOG_FORMAT=JSON each record is instead one JSON object:
// `{"timestamp","level","requestId","message"}`, plus `errorType`, `errorMessage` and
// `stackTrace` when an error is logged. AWS_LAMBDA_LOG_LEVEL drops the methods below it.

/** The request id printed in log lines: the latest invocation's, "undefined" before any. */
let logRequestId;

const LOG_LEVELS = ['TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL'];

let utilModule;
/** `node:util`, loaded on first use: a function that never logs never needs it. */
function util() {
  if (utilModule === undefined) utilModule = require('node:util');
  return utilModule;
}

function jsonLogs() {
  return (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
}

function textRecord(level, args) {
  const message = util().format(...args);
  const line = `${new Date().toISOString()}\t${logRequestId}\t${level}\t${message}`;
  return line.replace(/\n/g, '\r');
}

function jsonRecord(level, args) {
  const record = { timestamp: new Date().toISOString(), level };
  if (logRequestId !== undefined) record.requestId = logRequestId;
  record.message = util().format(...args);
  const error = args.find((a) => a instanceof Error);
  if (error !== undefined) {
    record.errorType = error.name;
    record.errorMessage = error.message;
    record.stackTrace = String(error.stack || '').split('\n');
  }
  try {
    return JSON.stringify(record);
  } catch {
    return JSON.stringify({ ...record, message: String(record.message) });
  }
}

function patchConsole() {
  const levels = { log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'DEBUG', trace: 'TRACE' };
  const format = jsonLogs() ? jsonRecord : textRecord;
  const least = LOG_LEVELS.indexOf((process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase());
  for (const [method, level] of Object.entries(levels)) {
    console[method] =
      least > LOG_LEVELS.indexOf(level)
        ? () => {}
        : (...args) => process.stdout.write(`${format(level, args)}\n`);
  }
  quietStdio();
}

/**
 * A closed pipe (Nimbus went away) must not turn every write to stdout or stderr into a
 * crash: each stream gets an error listener before anything can write to it. Node makes
 * `process.stdout` and `process.stderr` on first access (for a pipe, a socket and the
 * `node:net` machinery behind it); they are wrapped so that this still happens on first
 * access rather than at start-up, whoever makes it.
 */
function quietStdio() {
  for (const name of ['stdout', 'stderr']) {
    const descriptor = Object.getOwnPropertyDescriptor(process, name);
    if (descriptor && typeof descriptor.get === 'function' && descriptor.configurable) {
      let stream;
      Object.defineProperty(process, name, {
        configurable: true,
        enumerable: descriptor.enumerable,
        get() {
          if (stream === undefined) {
            stream = descriptor.get.call(process);
            stream.on('error', () => {});
          }
          return stream;
        },
      });
    } else {
      process[name].on('error', () => {});
    }
  }
}

// ---------------------------------------------------------------------------------------
// Errors: the documents Lambda's Node.js runtime posts, and its own error types.

function runtimeError(name, message, stack) {
  const error = new Error(message);
  error.name = name;
  if (stack !== undefined) error.stack = stack;
  return error;
}

function isErrorLike(value) {
  return (
    util().types.isNativeError(value) ||
    value instanceof Error ||
    (value !== null &&
      typeof value === 'object' &&
      typeof value.name === 'string' &&
      typeof value.message === 'string' &&
      typeof value.stack === 'string')
  );
}

/** `{errorType, errorMessage, trace}` for anything thrown or passed as an error. */
function errorDocument(error) {
  try {
    if (isErrorLike(error)) {
      return {
        errorType: String(error.name),
        errorMessage: String(error.message),
        trace: typeof error.stack === 'string' ? error.stack.split('\n') : [],
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch {
    return { errorType: 'handled', errorMessage: 'the error could not be read (its name, message or stack threw)', trace: [] };
  }
}

/** The text after "Invoke Error" and friends in the log: the document plus own fields. */
function formatForLog(error) {
  const doc = errorDocument(error);
  const record = { errorType: doc.errorType, errorMessage: doc.errorMessage };
  if (error !== null && typeof error === 'object') {
    try {
      for (const key of Object.keys(error)) {
        if (!['name', 'message', 'stack'].includes(key) && !(key in record)) record[key] = error[key];
      }
    } catch {
      // Fields behind throwing getters are left out.
    }
  }
  record.stack = doc.trace;
  try {
    return `\t${JSON.stringify(record)}`;
  } catch {
    return `\t${JSON.stringify({ errorType: doc.errorType, errorMessage: doc.errorMessage, stack: doc.trace })}`;
  }
}

/** Header values must be visible ASCII; anything else is percent-encoded as UTF-8. */
function headerSafe(text) {
  return text.replace(/[^\x20-\x7e]/gu, (ch) =>
    [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  );
}

// ---------------------------------------------------------------------------------------
// The Runtime API client.

function apiAddress() {
  const value = process.env.AWS_LAMBDA_RUNTIME_API;
  if (!value) {
    process.stderr.write('nimbus bootstrap: AWS_LAMBDA_RUNTIME_API is not set\n');
    process.exit(1);
  }
  const url = new URL(`http://${value}`);
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: Number(url.port) || 80 };
}

const api = apiAddress();

// The client is HTTP/1.1 written out by hand over `node:net`: `node:http` costs a good part
// of a cold start to load, and the Runtime API needs little of it. Requests go over one
// keep-alive connection, used by one request at a time; a streaming response takes a
// connection of its own.

/** Longest response head (status line and headers) taken from the Runtime API. */
const MAX_HEAD_BYTES = 1024 * 1024;
/** Longest line inside a chunked body (chunk size and extensions, or a trailer). */
const MAX_LINE_BYTES = 64 * 1024;
const CRLF = Buffer.from('\r\n', 'latin1');

let netModule;
/** The idle keep-alive connection, if there is one. */
let idleConnection = null;

/** An error for a connection that ended before its response did. */
function closedError(beforeResponse) {
  const error = new Error('the Runtime API closed the connection before its response ended');
  error.code = 'ECONNRESET';
  error.beforeResponse = beforeResponse;
  return error;
}

/**
 * Reads one HTTP/1.1 response from the bytes it is given: `push(chunk)` returns the
 * response once it is complete, and `end()` when the connection has closed. A response is
 * `{status, headers, body, keepAlive}`, header names lowercased and repeated headers joined
 * with ", ", the body as UTF-8 text.
 */
class ResponseReader {
  #state = 'head';
  /** Bytes not consumed yet: part of the head, a chunk-size line or a trailer line. */
  #pending = null;
  #remaining = 0;
  #body = [];
  #status = 0;
  #headers = {};
  #keepAlive = false;
  /** Whether any byte of the response has arrived. */
  started = false;

  push(chunk) {
    this.started = true;
    let data = this.#pending === null ? chunk : Buffer.concat([this.#pending, chunk]);
    this.#pending = null;
    while (data.length > 0 || this.#state === 'done') {
      switch (this.#state) {
        case 'head': {
          const end = data.indexOf('\r\n\r\n', 0, 'latin1');
          if (end < 0) {
            if (data.length > MAX_HEAD_BYTES) throw new Error('the Runtime API sent a response head over 1 MiB');
            this.#pending = data;
            return undefined;
          }
          this.#readHead(data.subarray(0, end).toString('latin1'));
          data = data.subarray(end + 4);
          break;
        }
        case 'fixed':
        case 'chunk-data': {
          const take = Math.min(this.#remaining, data.length);
          this.#body.push(data.subarray(0, take));
          this.#remaining -= take;
          data = data.subarray(take);
          if (this.#remaining === 0) this.#state = this.#state === 'fixed' ? 'done' : 'chunk-end';
          break;
        }
        case 'chunk-size':
        case 'chunk-end':
        case 'trailers': {
          const end = data.indexOf(CRLF);
          if (end < 0) {
            if (data.length > MAX_LINE_BYTES) throw new Error('the Runtime API sent a chunked body line over 64 KiB');
            this.#pending = data;
            return undefined;
          }
          this.#readLine(data.subarray(0, end).toString('latin1'));
          data = data.subarray(end + 2);
          break;
        }
        case 'close':
          this.#body.push(data);
          return undefined;
        case 'done':
          // Bytes after the response: the connection cannot be trusted with another one.
          if (data.length > 0) this.#keepAlive = false;
          return this.#response();
        default:
          throw new Error(`unknown response state ${this.#state}`);
      }
    }
    return undefined;
  }

  /** The connection has closed: the response if it was complete (or ran to the close). */
  end() {
    if (this.#state === 'close' || this.#state === 'done') {
      this.#keepAlive = false;
      return this.#response();
    }
    throw closedError(!this.started);
  }

  #response() {
    return {
      status: this.#status,
      headers: this.#headers,
      body: Buffer.concat(this.#body).toString('utf8'),
      keepAlive: this.#keepAlive,
    };
  }

  #readHead(text) {
    const lines = text.split('\r\n');
    const status = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(lines[0]);
    if (status === null) throw new Error(`the Runtime API sent no HTTP/1.1 status line: ${lines[0].slice(0, 100)}`);
    const code = Number(status[2]);
    const headers = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) throw new Error(`the Runtime API sent a malformed header line: ${line.slice(0, 100)}`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    if (code >= 100 && code < 200) {
      // An interim response (100 Continue): the real one follows.
      return;
    }
    this.#status = code;
    this.#headers = headers;
    const connection = (headers.connection || '').toLowerCase();
    this.#keepAlive = status[1] === '1' ? !connection.includes('close') : connection.includes('keep-alive');
    const length = headers['content-length'];
    if (code === 204 || code === 304) {
      this.#state = 'done';
    } else if ((headers['transfer-encoding'] || '').toLowerCase().includes('chunked')) {
      this.#state = 'chunk-size';
    } else if (length !== undefined) {
      if (!/^\d+$/.test(length)) throw new Error(`the Runtime API sent a bad Content-Length: ${length}`);
      this.#remaining = Number(length);
      this.#state = this.#remaining === 0 ? 'done' : 'fixed';
    } else {
      this.#state = 'close';
      this.#keepAlive = false;
    }
  }

  #readLine(line) {
    if (this.#state === 'chunk-end') {
      if (line !== '') throw new Error('the Runtime API sent a chunk longer than its size');
      this.#state = 'chunk-size';
    } else if (this.#state === 'chunk-size') {
      const size = line.split(';')[0].trim();
      if (!/^[0-9a-fA-F]+$/.test(size)) throw new Error(`the Runtime API sent a bad chunk size: ${line.slice(0, 100)}`);
      this.#remaining = parseInt(size, 16);
      this.#state = this.#remaining === 0 ? 'trailers' : 'chunk-data';
    } else if (line === '') {
      // The empty line after the trailers (which the runtime has no use for).
      this.#state = 'done';
    }
  }
}

/**
 * One TCP connection to the Runtime API, carrying one request at a time: `write` sends it
 * and `response` waits for the answer. It has its listeners from the start, so that a
 * connection failing or closing while idle is only marked closed, never an uncaught
 * exception.
 */
class Connection {
  #socket;
  /** The exchange in progress: `{reader, resolve, reject}`. */
  #waiter = null;
  closed = false;

  constructor() {
    if (netModule === undefined) netModule = require('node:net');
    this.#socket = netModule.connect({ host: api.host, port: api.port, noDelay: true });
    this.#socket.on('data', (chunk) => this.#data(chunk));
    this.#socket.on('end', () => this.#end());
    this.#socket.on('error', (err) => this.#fail(err));
    this.#socket.on('close', () => {
      this.closed = true;
      if (idleConnection === this) idleConnection = null;
      this.#fail(closedError(this.#waiter === null || !this.#waiter.reader.started));
    });
  }

  /** Writes `parts` (strings are Latin-1) as one batch. */
  write(parts, callback) {
    this.#socket.cork();
    parts.forEach((part, i) => {
      const bytes = typeof part === 'string' ? Buffer.from(part, 'latin1') : part;
      this.#socket.write(bytes, i === parts.length - 1 ? callback : undefined);
    });
    this.#socket.uncork();
  }

  /** Waits for the response to what was written; the connection keeps the process alive. */
  response() {
    this.#socket.ref();
    return new Promise((resolve, reject) => {
      this.#waiter = { reader: new ResponseReader(), resolve, reject };
      if (this.closed) this.#fail(closedError(true));
    });
  }

  /** Keeps the connection for the next request without holding the process open. */
  park() {
    this.#socket.unref();
    idleConnection = this;
  }

  destroy() {
    this.closed = true;
    this.#socket.destroy();
  }

  #data(chunk) {
    const waiter = this.#waiter;
    if (waiter === null) {
      // Nothing was asked: the connection is out of step with the server.
      this.destroy();
      return;
    }
    let response;
    try {
      response = waiter.reader.push(chunk);
    } catch (err) {
      this.#waiter = null;
      this.destroy();
      waiter.reject(err);
      return;
    }
    if (response !== undefined) {
      this.#waiter = null;
      waiter.resolve(response);
    }
  }

  #end() {
    this.closed = true;
    if (idleConnection === this) idleConnection = null;
    const waiter = this.#waiter;
    if (waiter === null) return;
    this.#waiter = null;
    let response;
    try {
      response = waiter.reader.end();
    } catch (err) {
      waiter.reject(err);
      return;
    }
    waiter.resolve(response);
  }

  #fail(err) {
    this.closed = true;
    const waiter = this.#waiter;
    if (waiter === null) return;
    this.#waiter = null;
    if (err.beforeResponse === undefined) err.beforeResponse = !waiter.reader.started;
    waiter.reject(err);
  }
}

/** The request head: request line, `Host`, then `headers` (an object), then the blank line. */
function requestHead(method, urlPath, headers) {
  let head = `${method} ${urlPath} HTTP/1.1\r\nHost: ${process.env.AWS_LAMBDA_RUNTIME_API}\r\n`;
  for (const [name, value] of Object.entries(headers)) head += `${name}: ${value}\r\n`;
  return `${head}\r\n`;
}

/**
 * One request to the Runtime API; resolves with `{status, headers, body}`. `body` is a
 * Buffer, sent as JSON.
 */
async function apiRequest(method, urlPath, body, headers = {}, retried = false) {
  const reused = idleConnection;
  idleConnection = null;
  const connection = reused ?? new Connection();
  const allHeaders = { ...headers, Connection: 'keep-alive' };
  if (body !== undefined) {
    allHeaders['Content-Type'] = 'application/json';
    allHeaders['Content-Length'] = body.length;
  }
  const head = requestHead(method, urlPath, allHeaders);
  let response;
  // Whether the whole request went out: a server can answer before it has read it all.
  let sent = false;
  try {
    const answer = connection.response();
    connection.write(body === undefined ? [head] : [head, body], (err) => (sent = !err));
    response = await answer;
  } catch (err) {
    connection.destroy();
    // The server may close a kept connection just as it is reused: try once more, anew.
    if (reused !== null && !retried && err.beforeResponse) {
      return apiRequest(method, urlPath, body, headers, true);
    }
    throw err;
  }
  if (response.keepAlive && sent && !connection.closed) connection.park();
  else connection.destroy();
  return response;
}

/** Logs a Runtime API answer that refuses what the runtime posted. */
function checkAnswer(urlPath, res) {
  if (res.status < 200 || res.status > 299) {
    console.error(`Runtime API answered ${res.status} to POST ${urlPath}: ${res.body}`);
  }
}

async function apiPost(urlPath, text, headers) {
  checkAnswer(urlPath, await apiRequest('POST', urlPath, Buffer.from(text, 'utf8'), headers));
}

/** The error document for `error` and its JSON text. */
function errorPayload(error) {
  const doc = errorDocument(error);
  let text;
  try {
    text = JSON.stringify(doc);
  } catch {
    text = JSON.stringify({ errorType: 'handled', errorMessage: 'the error could not be serialised', trace: [] });
  }
  return { doc, text };
}

function postError(urlPath, error, exiting = false) {
  const { doc, text } = errorPayload(error);
  const headers = { 'Lambda-Runtime-Function-Error-Type': headerSafe(doc.errorType) };
  // Nimbus's own header: the process ends after this post, so its instance must not be
  // handed another invocation.
  if (exiting) headers['Nimbus-Runtime-Exiting'] = '1';
  return apiPost(urlPath, text, headers);
}

function invocationPath(id, what) {
  return `${API_PREFIX}/invocation/${encodeURIComponent(id)}/${what}`;
}

/** The Runtime API cannot be reached or refused the runtime: nothing left to do. */
function apiFailure(err) {
  process.stderr.write(`nimbus bootstrap: Runtime API request failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------
// Response streaming: the `awslambda` global of Lambda's Node.js runtime, and the streaming
// mode of the Runtime API's invocation response.

/** Marks the handlers `awslambda.streamifyResponse` returns; its value is their options. */
const STREAMING = Symbol('awslambda.streamifyResponse');
const DEFAULT_STREAM_CONTENT_TYPE = 'application/octet-stream';
const HTTP_INTEGRATION_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';
/** Ends the JSON prelude of an HTTP integration response; the body follows. */
const PRELUDE_DELIMITER = Buffer.alloc(8);
const ERROR_TYPE_TRAILER = 'Lambda-Runtime-Function-Error-Type';
const ERROR_BODY_TRAILER = 'Lambda-Runtime-Function-Error-Body';

/**
 * The `responseStream` a streaming handler writes to: the body of a POST to
 * `.../invocation/{id}/response` in streaming mode, each write sent on as one HTTP chunk as
 * soon as it is made. The POST starts with the first write, so the content type can be set
 * until then. Ending the stream does not end the POST: `complete` does, once the outcome of
 * the invocation is known, so that a failure after the stream ended can still be reported,
 * in the trailers.
 */
class ResponseStream extends Writable {
  #urlPath;
  #contentType = DEFAULT_STREAM_CONTENT_TYPE;
  /** The POST's connection, once the POST has started. */
  #connection = null;
  /** The Runtime API's answer to the POST: `{status, body}`. */
  #answer = null;

  constructor(urlPath, options) {
    super(options);
    this.#urlPath = urlPath;
  }

  setContentType(contentType) {
    if (this.#connection !== null) {
      throw new Error('the content type of a response stream must be set before the first write');
    }
    const text = String(contentType);
    if (!/^[\t\x20-\x7e\x80-\xff]*$/.test(text)) {
      throw new TypeError(`Invalid character in the content type of a response stream: ${JSON.stringify(text)}`);
    }
    this.#contentType = text;
  }

  _write(chunk, encoding, callback) {
    const connection = this.#start();
    // An empty chunk would end the body: there is nothing to send.
    if (chunk.length === 0) {
      callback();
      return;
    }
    // The callback waits for the chunk to reach the socket, which passes the Runtime API's
    // back-pressure on to the handler (and to pipeline()).
    connection.write([`${chunk.length.toString(16)}\r\n`, chunk, '\r\n'], callback);
  }

  _final(callback) {
    callback();
  }

  #start() {
    if (this.#connection !== null) return this.#connection;
    // A connection of its own rather than the kept one: a kept connection the server closes
    // just as it is reused could only be retried by replaying the body.
    const connection = new Connection();
    this.#answer = connection.response().then(
      (res) => ({ status: res.status, body: res.body }),
      (err) => {
        // The handler learns that its writes go nowhere; an answer already received stands.
        this.destroy(err);
        throw err;
      },
    );
    // Awaited by `complete`; a failure before then must not count as an unhandled rejection.
    this.#answer.catch(() => {});
    connection.write([
      requestHead('POST', this.#urlPath, {
        'Lambda-Runtime-Function-Response-Mode': 'streaming',
        'Transfer-Encoding': 'chunked',
        'Content-Type': this.#contentType,
        Trailer: `${ERROR_TYPE_TRAILER}, ${ERROR_BODY_TRAILER}`,
        Connection: 'close',
      }),
    ]);
    this.#connection = connection;
    return connection;
  }

  /**
   * Ends the POST, with `error` in the trailers when there is one, starting it first if
   * nothing was written. Resolves with the Runtime API's answer.
   */
  complete(error, exiting = false) {
    const connection = this.#start();
    let last = '0\r\n';
    if (error !== undefined) {
      const { doc, text } = errorPayload(error);
      last += `${ERROR_TYPE_TRAILER}: ${headerSafe(doc.errorType)}\r\n`;
      last += `${ERROR_BODY_TRAILER}: ${Buffer.from(text, 'utf8').toString('base64')}\r\n`;
      // As postError's header: the process ends after this.
      if (exiting) last += 'Nimbus-Runtime-Exiting: 1\r\n';
    }
    connection.write([`${last}\r\n`]);
    return this.#answer.finally(() => connection.destroy());
  }
}

/**
 * `awslambda.streamifyResponse(handler, options)`: makes `handler(event, responseStream,
 * context)` a streaming handler. `options.highWaterMark` sizes the stream's buffer. It returns
 * a new function rather than marking `handler`, so that a function also exported as is stays
 * a plain handler under that name.
 */
function streamifyResponse(handler, options) {
  if (typeof handler !== 'function') {
    throw new TypeError('awslambda.streamifyResponse expects the handler function');
  }
  const streaming = function streamingHandler(...args) {
    return handler.apply(this, args);
  };
  streaming[STREAMING] = { highWaterMark: options?.highWaterMark };
  return streaming;
}

/**
 * `awslambda.HttpResponseStream.from(responseStream, metadata)` starts an HTTP response for
 * a function URL: the metadata (`statusCode`, `headers`, `cookies`) as JSON, then 8 NUL
 * bytes, under the HTTP integration content type. What is then written to the stream it
 * returns (the same stream) is the HTTP body.
 */
class HttpResponseStream {
  static from(responseStream, metadata) {
    responseStream.setContentType(HTTP_INTEGRATION_CONTENT_TYPE);
    const prelude = JSON.stringify(metadata ?? {}) ?? '{}';
    responseStream.write(Buffer.concat([Buffer.from(prelude, 'utf8'), PRELUDE_DELIMITER]));
    return responseStream;
  }
}

function installAwsLambdaGlobal() {
  globalThis.awslambda = { streamifyResponse, HttpResponseStream };
}

// ---------------------------------------------------------------------------------------
// Loading the handler.

/** Splits `_HANDLER` ("dir/module.export.path") as Lambda does. */
function parseHandler(handler) {
  if (typeof handler !== 'string' || handler === '') {
    throw runtimeError('Runtime.MalformedHandlerName', 'Bad handler');
  }
  if (handler.includes('..')) {
    throw runtimeError('Runtime.MalformedHandlerName', "'..' is not allowed in handler name.");
  }
  const slash = handler.lastIndexOf('/');
  const dir = handler.slice(0, slash + 1);
  const base = handler.slice(slash + 1);
  const dot = base.indexOf('.');
  const moduleName = base.slice(0, dot);
  const exportPath = dot < 0 ? [] : base.slice(dot + 1).split('.');
  if (dot <= 0 || exportPath.some((part) => part === '')) {
    throw runtimeError('Runtime.MalformedHandlerName', 'Bad handler');
  }
  return { dir, moduleName, exportPath };
}

function isFile(file) {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** Whether Node treats a `.js` file as an ES module: the nearest package.json says so. */
function inModuleScope(file) {
  let dir = path.dirname(file);
  for (;;) {
    let text;
    try {
      text = fs.readFileSync(path.join(dir, 'package.json'), 'utf8');
    } catch {
      text = undefined;
    }
    if (text !== undefined) {
      try {
        return JSON.parse(text).type === 'module';
      } catch {
        return false;
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir || path.basename(dir) === 'node_modules') return false;
    dir = parent;
  }
}

function isEsm(file) {
  const ext = path.extname(file);
  return ext === '.mjs' || (ext === '.js' && inModuleScope(file));
}

/** The file Lambda would load for the module part of the handler, or undefined. */
function findModuleFile(taskRoot, dir, moduleName) {
  const base = path.resolve(taskRoot, dir, moduleName);
  for (const candidate of [base, `${base}.js`, `${base}.mjs`, `${base}.cjs`]) {
    if (isFile(candidate)) return candidate;
  }
  // Then Node's own resolution: a directory with index.js or a package.json "main", or a
  // package under node_modules.
  const req = createRequire(path.join(taskRoot, 'noop.js'));
  for (const [specifier, options] of [
    [base, undefined],
    [dir + moduleName, { paths: [path.resolve(taskRoot, dir), taskRoot] }],
  ]) {
    try {
      return req.resolve(specifier, options);
    } catch {
      // Not resolvable this way.
    }
  }
  return undefined;
}

async function loadModule(file) {
  if (isEsm(file)) {
    offerAwsSdkToEsModules(process.env.LAMBDA_TASK_ROOT || path.dirname(file));
    return import(require('node:url').pathToFileURL(file).href);
  }
  return createRequire(file)(file);
}

/**
 * The resolve hook of `offerAwsSdkToEsModules`, a module of its own: a bare import the
 * importing module's own `node_modules` cannot satisfy is resolved again from the SDK's.
 */
const SDK_RESOLVE_HOOK = `
let fallback;
export function initialize(data) { fallback = data.parentURL; }
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    const bare = !/^(?:[./]|[a-zA-Z][a-zA-Z0-9+.-]*:)/.test(specifier);
    if (!bare || !fallback || err?.code !== 'ERR_MODULE_NOT_FOUND') throw err;
    try {
      return await next(specifier, { ...context, parentURL: fallback });
    } catch {
      // Not the SDK's either: the error names the module that imported it.
      throw err;
    }
  }
}
`;

/**
 * Lambda's Node.js runtimes include the AWS SDK for JavaScript v3; Nimbus installs the
 * clients of the services it serves and names them in NODE_PATH, which `require` reads
 * but ES modules do not. For an ES module handler a resolve hook (`module.register`,
 * Node.js 20.6 and later) makes `import ... from '@aws-sdk/client-dynamodb'` find them
 * too, after the function's own `node_modules`. The hook runs on a loader thread of its
 * own (on Node.js 20 about 80 ms of start-up and 11 MB), so it is registered only for
 * code that names an `@aws-sdk/` package; a bundled SDK still comes first.
 */
function offerAwsSdkToEsModules(taskRoot) {
  const sdk = process.env.NIMBUS_NODE_SDK;
  const { register } = require('node:module');
  if (!sdk || typeof register !== 'function' || offerAwsSdkToEsModules.done) return;
  offerAwsSdkToEsModules.done = true;
  if (!mentionsAwsSdk(taskRoot)) return;
  // A file directly in the SDK's node_modules: resolving from there finds its packages.
  const parentURL = require('node:url').pathToFileURL(path.join(sdk, 'resolve-from-here.js')).href;
  try {
    register(`data:text/javascript,${encodeURIComponent(SDK_RESOLVE_HOOK)}`, { data: { parentURL } });
  } catch (err) {
    process.stderr.write(`nimbus bootstrap: cannot offer the AWS SDK to ES modules: ${err}\n`);
  }
}

/** Source files looked at, at most, by `mentionsAwsSdk`; past them it answers yes. */
const SDK_SCAN_FILES = 500;

/**
 * Whether a JavaScript file under `root` (outside `node_modules`) names an `@aws-sdk/`
 * package. Past `SDK_SCAN_FILES` files it says yes: the hook costs less than missing it.
 */
function mentionsAwsSdk(root) {
  const dirs = [root];
  let files = 0;
  while (dirs.length > 0) {
    const dir = dirs.pop();
    let entries;
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        dirs.push(full);
      } else if (/\.(?:m|c)?js$/.test(entry.name)) {
        if (++files > SDK_SCAN_FILES) return true;
        try {
          if (fs.readFileSync(full, 'latin1').includes('@aws-sdk/')) return true;
        } catch {
          // Unreadable: not ours to judge.
        }
      }
    }
  }
  return false;
}

function classifyLoadError(err) {
  if (err instanceof SyntaxError) {
    return runtimeError('Runtime.UserCodeSyntaxError', String(err), err.stack);
  }
  if (err && (err.code === 'MODULE_NOT_FOUND' || err.code === 'ERR_MODULE_NOT_FOUND')) {
    return runtimeError('Runtime.ImportModuleError', String(err));
  }
  return err;
}

async function loadHandler(taskRoot, handlerString, parsed) {
  const { dir, moduleName, exportPath } = parsed;
  const file = findModuleFile(taskRoot, dir, moduleName);
  if (file === undefined) {
    throw runtimeError(
      'Runtime.ImportModuleError',
      `Error: Cannot find module '${dir}${moduleName}'\nRequire stack:\n- ${SELF}`,
    );
  }
  let mod;
  try {
    mod = await loadModule(file);
  } catch (err) {
    throw classifyLoadError(err);
  }
  let value = mod;
  for (const key of exportPath) {
    value = value === null || value === undefined ? undefined : value[key];
  }
  if (value === undefined || value === null) {
    throw runtimeError('Runtime.HandlerNotFound', `${handlerString} is undefined or not exported`);
  }
  if (typeof value !== 'function') {
    throw runtimeError('Runtime.HandlerNotFound', `${handlerString} is not a function`);
  }
  return value;
}

/**
 * The AWS SDK for JavaScript v2 ignores AWS_ENDPOINT_URL: point its global config at the
 * services endpoint before user code loads. `require` caches by resolved file name, so user
 * code gets this same module instance. (v3 reads AWS_ENDPOINT_URL itself.)
 */
function pointAwsSdkV2AtEndpoint(fromDir) {
  const endpoint = process.env.AWS_ENDPOINT_URL;
  if (!endpoint) return;
  const req = createRequire(path.join(fromDir, 'noop.js'));
  let resolved;
  try {
    resolved = req.resolve('aws-sdk');
  } catch {
    return;
  }
  const AWS = req(resolved);
  if (AWS && AWS.config && typeof AWS.config.update === 'function') AWS.config.update({ endpoint });
}

// ---------------------------------------------------------------------------------------
// Invocations.

/** 'init' until the handler is loaded, then 'invoke'. */
let phase = 'init';
/** The invocation being handled (or the last one handled). */
let current = null;
let crashing = false;

function isThenable(value) {
  return (
    value !== null && (typeof value === 'object' || typeof value === 'function') && typeof value.then === 'function'
  );
}

function parseHeaderJson(value, name) {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err}`);
  }
}

/** Sets `_X_AMZN_TRACE_ID` to this invocation's trace header, or clears it. */
function setTraceId(headers) {
  const trace = headers['lambda-runtime-trace-id'];
  if (trace) process.env._X_AMZN_TRACE_ID = trace;
  else delete process.env._X_AMZN_TRACE_ID;
}

/**
 * The context object. `answers` holds what `succeed`, `fail` and `done` do, and `waits`, the
 * box behind `callbackWaitsForEmptyEventLoop`.
 */
function buildContext(headers, id, answers) {
  const { succeed, fail, waits } = answers;
  const deadline = Number(headers['lambda-runtime-deadline-ms']);
  const context = {
    get callbackWaitsForEmptyEventLoop() {
      return waits.value;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waits.value = value;
    },
    succeed: (result) => succeed(result),
    fail: (error) => fail(error),
    done: (error, result) => (error !== undefined && error !== null ? fail(error) : succeed(result)),
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseHeaderJson(headers['lambda-runtime-client-context'], 'ClientContext'),
    identity: parseHeaderJson(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    awsRequestId: id,
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };
  if (headers['lambda-runtime-aws-tenant-id'] !== undefined) {
    context.tenantId = headers['lambda-runtime-aws-tenant-id'];
  }
  return context;
}

/**
 * Runs one invocation; resolves once its outcome has been posted. Outcomes funnel through
 * `succeed`/`fail`, which post at once; `onEmptyLoop` is what happens if the event loop
 * empties first (Lambda's rule for callback handlers and handlers that never answer).
 */
function runInvocation(handler, next) {
  return new Promise((finished) => {
    const headers = next.headers;
    const id = headers['lambda-runtime-aws-request-id'];
    const inv = {
      id,
      settled: false,
      posting: null,
      onEmptyLoop: null,
      postFatal: (error) => postError(invocationPath(id, 'error'), error, true),
    };
    current = inv;
    logRequestId = id;

    const settle = (post) => {
      if (inv.settled) {
        console.error(
          'Invocation has already been reported as done. Cannot call complete more than once per invocation.',
        );
        return;
      }
      inv.settled = true;
      inv.onEmptyLoop = null;
      let posted;
      try {
        posted = post();
      } catch (err) {
        posted = Promise.reject(err);
      }
      inv.posting = posted.then(finished, apiFailure);
    };
    const fail = (error) =>
      settle(() => {
        const reported = error === undefined || error === null ? 'handled' : error;
        console.error('Invoke Error', formatForLog(reported));
        return postError(invocationPath(id, 'error'), reported);
      });
    const succeed = (result) =>
      settle(() => {
        let text;
        try {
          text = JSON.stringify(result === undefined ? null : result);
        } catch {
          const error = runtimeError('Runtime.JSONStringifyError', 'Unable to stringify response body');
          console.error('Invoke Error', formatForLog(error));
          return postError(invocationPath(id, 'error'), error);
        }
        // Functions and symbols stringify to undefined; Lambda answers null.
        return apiPost(invocationPath(id, 'response'), text ?? 'null');
      });

    const waits = { value: true };
    let callbackCalled = false;
    const callback = (error, result) => {
      if (callbackCalled) return;
      callbackCalled = true;
      if (error !== undefined && error !== null) fail(error);
      else if (!waits.value) succeed(result);
      else inv.onEmptyLoop = () => succeed(result);
    };
    // A handler that neither returns a promise nor calls back answers null once the
    // event loop empties.
    inv.onEmptyLoop = () => succeed(undefined);

    setTraceId(headers);

    try {
      const context = buildContext(headers, id, { succeed, fail, waits });
      const event = JSON.parse(next.body);
      const returned = handler(event, context, callback);
      // Only a promise (any thenable) answers; any other returned value is ignored, as
      // Lambda does: a non-async handler answers through the callback,
      // context.succeed/fail/done, or null when the event loop empties.
      if (isThenable(returned)) returned.then(succeed, fail);
    } catch (err) {
      fail(err);
    }
  });
}

/**
 * Runs one invocation of a streaming handler; resolves once its response has been sent.
 * The response ends when the handler has ended the stream and its promise has settled
 * (waiting for the end lets a handler return while a pipe it started is still writing). A
 * failure (a throw, a rejection, context.fail, an error on the stream) ends it at once.
 *
 * Failures are reported in the `Lambda-Runtime-Function-Error-Type` and `-Body` trailers of
 * the streaming response, the body being the base64 of the error document a plain handler's
 * failure posts. That holds even when nothing was written yet: Lambda's Node.js runtime
 * answers a streamified handler in streaming mode from the start of the invocation, and
 * the trailers are how the Runtime API takes an error in that mode, so nothing is ever
 * posted to `.../error` for it.
 */
function runStreamingInvocation(handler, next) {
  return new Promise((finished) => {
    const headers = next.headers;
    const id = headers['lambda-runtime-aws-request-id'];
    const urlPath = invocationPath(id, 'response');
    const stream = new ResponseStream(urlPath, { highWaterMark: handler[STREAMING].highWaterMark });
    const send = (error, exiting = false) =>
      stream.complete(error, exiting).then((res) => checkAnswer(urlPath, res));
    const inv = { id, settled: false, posting: null, onEmptyLoop: null, postFatal: (error) => send(error, true) };
    current = inv;
    logRequestId = id;

    // A stream error is usually also the handler's rejection (pipeline() rejects with it):
    // only the first outcome counts, and the others are dropped without a word.
    const settle = (error) => {
      if (inv.settled) return;
      inv.settled = true;
      inv.onEmptyLoop = null;
      let sent;
      try {
        sent = send(error);
      } catch (err) {
        sent = Promise.reject(err);
      }
      inv.posting = sent.then(finished, apiFailure);
      // Writes still to come after a failure stop here instead of reaching the ended POST.
      if (error !== undefined) stream.destroy();
    };
    const fail = (error) => {
      if (inv.settled) return;
      const reported = error === undefined || error === null ? 'handled' : error;
      console.error('Invoke Error', formatForLog(reported));
      settle(reported);
    };
    let handlerDone = false;
    let streamDone = false;
    const succeedWhenDone = () => {
      if (handlerDone && streamDone) settle(undefined);
    };
    const handlerSettled = () => {
      handlerDone = true;
      succeedWhenDone();
    };
    stream.on('error', fail);
    // 'close' follows 'finish', an error, or destroy(): no more can be written.
    stream.on('close', () => {
      streamDone = true;
      succeedWhenDone();
    });
    // Nothing left to run can write to the stream any more: end it where it stands. This
    // can only happen before the first write, since the POST's socket keeps the process
    // alive after it: a handler that wrote but never ends the stream runs into its deadline
    // (the documentation tells handlers to end the stream).
    inv.onEmptyLoop = () => {
      handlerDone = true;
      if (!stream.writableEnded && !stream.destroyed) stream.end();
      succeedWhenDone();
    };

    setTraceId(headers);

    try {
      const context = buildContext(headers, id, { succeed: handlerSettled, fail, waits: { value: true } });
      const event = JSON.parse(next.body);
      const returned = handler(event, stream, context);
      if (isThenable(returned)) returned.then(handlerSettled, fail);
      else handlerSettled();
    } catch (err) {
      fail(err);
    }
  });
}

async function nextInvocation() {
  let res;
  try {
    res = await apiRequest('GET', `${API_PREFIX}/invocation/next`);
  } catch (err) {
    apiFailure(err);
  }
  if (res.status === 410) {
    // Nimbus is stopping this instance.
    process.exit(0);
  }
  if (res.status !== 200) {
    apiFailure(new Error(`GET invocation/next answered ${res.status}: ${res.body}`));
  }
  return res;
}

/** Reports a fatal error where it belongs (init, or the running invocation), then exits. */
function crash(error, code) {
  if (crashing) return;
  crashing = true;
  let report;
  if (phase === 'init') {
    report = postError(`${API_PREFIX}/init/error`, error);
  } else if (current && !current.settled) {
    current.settled = true;
    report = current.postFatal(error);
  } else {
    // Between invocations: let an answer already on its way arrive, then go.
    report = current && current.posting ? current.posting : Promise.resolve();
  }
  report.catch(() => {}).finally(() => process.exit(code));
}

function unhandledRejectionError(reason) {
  let message;
  try {
    message = String(reason);
  } catch {
    message = 'the rejection reason could not be converted to a string';
  }
  const name = 'Runtime.UnhandledPromiseRejection';
  const frames =
    reason && typeof reason.stack === 'string' ? reason.stack.split('\n').filter((l) => /^\s+at /.test(l)) : [];
  const error = runtimeError(name, message);
  if (frames.length > 0) error.stack = [`${name}: ${message}`, ...frames].join('\n');
  return error;
}

function installCrashHandlers() {
  process.on('unhandledRejection', (reason) => {
    const error = unhandledRejectionError(reason);
    console.error('Unhandled Promise Rejection', formatForLog(error));
    crash(error, EXIT_UNHANDLED_REJECTION);
  });
  process.on('uncaughtException', (error) => {
    console.error('Uncaught Exception', formatForLog(error));
    crash(error, EXIT_UNCAUGHT_EXCEPTION);
  });
  process.on('beforeExit', () => {
    if (phase === 'init') {
      // Loading can only run out of work in a top-level await that can never settle.
      const error = runtimeError(
        'Runtime.ExitError',
        `Error: the top-level await of the module for ${process.env._HANDLER} never settles`,
      );
      console.error('Uncaught Exception', formatForLog(error));
      crash(error, EXIT_UNSETTLED_TOP_LEVEL_AWAIT);
      return;
    }
    const inv = current;
    if (inv && !inv.settled && inv.onEmptyLoop) inv.onEmptyLoop();
  });
}

async function main() {
  patchConsole();
  installCrashHandlers();
  installAwsLambdaGlobal();
  const taskRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  const handlerString = process.env._HANDLER;
  let handler;
  try {
    const parsed = parseHandler(handlerString);
    pointAwsSdkV2AtEndpoint(path.resolve(taskRoot, parsed.dir));
    handler = await loadHandler(taskRoot, handlerString, parsed);
  } catch (err) {
    console.error('Uncaught Exception', formatForLog(err));
    crash(err, EXIT_UNCAUGHT_EXCEPTION);
    return;
  }
  phase = 'invoke';
  for (;;) {
    const next = await nextInvocation();
    if (handler[STREAMING]) await runStreamingInvocation(handler, next);
    else await runInvocation(handler, next);
  }
}

main().catch((err) => {
  console.error('Uncaught Exception', formatForLog(err));
  crash(err, EXIT_UNCAUGHT_EXCEPTION);
});
