// A subscribed npm ConvexClient carries on after the server is killed with
// SIGKILL and restarted on the same port and data.
//
// The script and the test take turns through stdout/stdin:
//   script: subscribes, sees the seeded list, prints `READY subscribed`;
//   test:   kills the server (kill -9), writes `killed`;
//   script: waits until the client notices, calls a mutation while the
//           server is down (the client must send it after reconnecting),
//           prints `READY queued`;
//   test:   restarts the server on the same port, writes `restarted`;
//   script: the queued mutation resolves, a mutation from a second client
//           (and one from this client) show up in the subscription.
//
// Params: {"channel": "..."}; the channel holds one message "seed".

import { createInterface } from "node:readline";
import { ConvexClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { Watch, clientOptions, note, run, settle, sleep, within } from "./lib.mjs";

const bodies = (list) => (Array.isArray(list) ? list.map((message) => message.body) : list);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function turn(say, expect) {
  process.stdout.write(`\nREADY ${say}\n`);
  note(`the test to answer ${expect}`);
  const { value, done } = await lines.next();
  if (done || value.trim() !== expect) throw new Error(`expected ${expect} from the test, got ${value}`);
}

async function waitForState(client, predicate, what, timeoutMs = 15000) {
  note(what);
  const deadline = Date.now() + timeoutMs;
  while (!predicate(client.connectionState())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}; state ${JSON.stringify(client.connectionState())}`);
    await sleep(20);
  }
}

run(async (url, { channel }, partial) => {
  const a = new ConvexClient(url, clientOptions);
  const list = new Watch("A's messages:list");
  a.onUpdate(api.messages.list, { channel }, list.push, list.fail);
  partial.updates = list.values;
  await list.until((value) => Array.isArray(value) && value.some((m) => m.body === "seed"), "the seeded list");
  const before = a.connectionState();

  await turn("subscribed", "killed");
  await waitForState(a, (state) => !state.isWebSocketConnected, "the client to notice the server is gone");
  const queued = a.mutation(api.messages.send, { channel, author: "a", body: "while-down" });
  await turn("queued", "restarted");

  const queuedResult = await settle(queued, "the mutation queued while the server was down", 30000);
  partial.queuedResult = queuedResult;
  await list.until((value) => value.some((m) => m.body === "while-down"), "the queued mutation in the list", 30000);

  const b = new ConvexClient(url, clientOptions);
  const fromB = await settle(b.mutation(api.messages.send, { channel, author: "b", body: "after-restart" }),
    "B's mutation after the restart");
  await list.until((value) => value.some((m) => m.body === "after-restart"), "B's mutation in A's list");
  const fromA = await settle(a.mutation(api.messages.send, { channel, author: "a", body: "a-after-restart" }),
    "A's mutation after the restart");
  await list.until((value) => value.some((m) => m.body === "a-after-restart"), "A's own later mutation");
  const after = a.connectionState();
  await within(Promise.all([a.close(), b.close()]), "closing");
  return {
    before,
    after,
    queuedResult,
    fromA,
    fromB,
    final: bodies(list.latest()),
    updates: list.values.map(bodies),
    errors: list.errors,
  };
}, 60000);
