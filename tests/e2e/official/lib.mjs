// Shared helpers for the scripts that drive the official npm `convex` client.
//
// Every script is run as `node SCRIPT.mjs <deployment url> [<JSON params>]`
// by tests/e2e/official/harness.py. It prints exactly one line that starts
// with `RESULT ` followed by JSON: `{"ok": true, ...}` with what it observed,
// or `{"ok": false, "error": {...}, "partial": {...}}`. Either way the line
// also carries the last WebSocket frames both ways (`frames`), so a failure
// report shows the exact protocol messages involved. Anything else the
// client prints (its own log lines) goes to stdout/stderr around that line.
//
// A script never hangs: `run` arms a deadline that reports what the script
// was waiting for and exits.

import { writeSync } from "node:fs";
import WebSocket from "ws";

const FRAMES_MAX = 400; // Enough for a reconnect or two; the report shows the tail.
const FRAME_CHARS_MAX = 600; // A frame's text is cut here; values in these tests are small.

const startedMs = Date.now();
const frames = [];
// The version-carrying fields of every sync message, unclipped, for
// harness.py's protocol checks (check_sync_messages).
const messages = [];
let socketCount = 0;
let waitingFor = "start";

function record(entry) {
  frames.push({ ms: Date.now() - startedMs, ...entry });
  if (frames.length > FRAMES_MAX) frames.splice(0, frames.length - FRAMES_MAX);
}

// What protocol checks need of one sync message (see harness.summarize).
export function summarize(socket, dir, text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    messages.push({ socket, dir, type: "<not JSON>" });
    return;
  }
  const summary = { socket, dir, type: message.type };
  for (const key of ["startVersion", "endVersion", "requestId", "success", "ts", "baseVersion", "newVersion"]) {
    if (key in message) summary[key] = message[key];
  }
  if ("logLines" in message) summary.logLines = Array.isArray(message.logLines);
  if (Array.isArray(message.modifications) && message.type === "Transition") {
    summary.modifications = message.modifications.map((m) => ({
      type: m.type, queryId: m.queryId, logLines: Array.isArray(m.logLines), journal: "journal" in m,
    }));
  }
  messages.push(summary);
}

function clip(text) {
  return text.length > FRAME_CHARS_MAX ? text.slice(0, FRAME_CHARS_MAX) + "…" : text;
}

// The `ws` WebSocket that the Node build of `convex` uses, recording each
// frame. Pass it as `webSocketConstructor` to ConvexClient or BaseConvexClient.
export class RecordingWebSocket extends WebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    const socket = ++socketCount;
    this._recordingId = socket; // Not `_socket`: ws keeps its net.Socket there.
    record({ socket, dir: "connect", data: String(url) });
    this.on("message", (data, isBinary) => {
      record({ socket, dir: "in", data: isBinary ? `<binary ${data.length} bytes>` : clip(data.toString()) });
      if (!isBinary) summarize(socket, "in", data.toString());
    });
    this.on("close", (code, reason) => {
      record({ socket, dir: "close", data: `code ${code} reason ${JSON.stringify(reason.toString())}` });
      messages.push({ socket, dir: "end", type: "<end>" });
    });
    this.on("error", (error) => record({ socket, dir: "error", data: String(error && error.message) }));
  }

  send(data, ...rest) {
    record({ socket: this._recordingId, dir: "out", data: clip(String(data)) });
    summarize(this._recordingId, "out", String(data));
    return super.send(data, ...rest);
  }
}

// Client options every script uses: the recording socket, no browser-only
// warnings, and Convex's own logging kept (it goes around the RESULT line).
export const clientOptions = {
  webSocketConstructor: RecordingWebSocket,
  unsavedChangesWarning: false,
};

// JSON that survives BigInt (int64 values from a Python app arrive as BigInt).
function toJson(value) {
  return JSON.stringify(value, (key, item) =>
    typeof item === "bigint" ? { $bigint: item.toString() } : item);
}

export function describeError(error) {
  if (error === null || typeof error !== "object") return { name: typeof error, message: String(error) };
  const info = { name: error.constructor ? error.constructor.name : "Error", message: String(error.message) };
  if ("data" in error) info.data = error.data;
  return info;
}

export function note(what) {
  waitingFor = what;
  record({ socket: 0, dir: "step", data: what });
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Values pushed by a subscription callback, with a way to wait for one that
// satisfies a predicate.
export class Watch {
  constructor(label) {
    this.label = label;
    this.values = [];
    this.errors = [];
    this.waiters = [];
  }

  push = (value) => {
    this.values.push(value);
    this.waiters = this.waiters.filter(({ predicate, resolve }) => {
      if (!predicate(value)) return true;
      resolve(value);
      return false;
    });
  };

  fail = (error) => {
    this.errors.push(describeError(error));
  };

  latest() {
    return this.values[this.values.length - 1];
  }

  // Resolves with the latest value if `predicate` holds for it, else with
  // the next value for which it holds; rejects after `timeoutMs` naming `what`.
  until(predicate, what, timeoutMs = 10000) {
    note(`${this.label}: ${what}`);
    if (this.values.length && predicate(this.latest())) return Promise.resolve(this.latest());
    return new Promise((resolve, reject) => {
      const waiter = { predicate, resolve };
      this.waiters.push(waiter);
      setTimeout(() => {
        this.waiters = this.waiters.filter((other) => other !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${this.label}: ${what}; ` +
          `last value ${toJson(this.latest())}; errors ${toJson(this.errors)}`));
      }, timeoutMs);
    });
  }
}

// Awaits `promise` for at most `timeoutMs`, naming `what` when it times out.
export function within(promise, what, timeoutMs = 10000) {
  note(what);
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Settles `promise` into `{ok, value}` or `{ok: false, error}` (never throws).
export async function settle(promise, what, timeoutMs = 10000) {
  try {
    return { ok: true, value: await within(promise, what, timeoutMs) };
  } catch (error) {
    return { ok: false, error: describeError(error) };
  }
}

// Written synchronously, to the last byte: the script exits right after,
// and stdout may be a non-blocking pipe that takes a large line in parts.
function emit(payload) {
  const bytes = Buffer.from("\nRESULT " + toJson({ ...payload, frames, messages }) + "\n");
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(1, bytes, offset);
    } catch (error) {
      if (error.code !== "EAGAIN") throw error;
    }
  }
}

// Runs `body(url, params, partial)` and reports. `partial` is an object the
// body fills as it goes, so a timeout still reports what was observed.
export function run(body, deadlineMs = 40000) {
  const url = process.argv[2];
  const params = process.argv[3] ? JSON.parse(process.argv[3]) : {};
  const partial = {};
  const deadline = setTimeout(() => {
    emit({ ok: false, error: { name: "Deadline", message: `script deadline while waiting for: ${waitingFor}` }, partial });
    process.exit(0);
  }, params.deadlineMs ?? deadlineMs);
  body(url, params, partial).then(
    (result) => {
      clearTimeout(deadline);
      emit({ ok: true, ...result });
      process.exit(0);
    },
    (error) => {
      clearTimeout(deadline);
      emit({ ok: false, error: { ...describeError(error), waitingFor, stack: String(error && error.stack) }, partial });
      process.exit(0);
    },
  );
}
