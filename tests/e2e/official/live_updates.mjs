// Two npm ConvexClients over WebSocket: A subscribes to a list, B mutates, A
// sees each change live; ConvexError data from a mutation and from a query;
// a plain function error; an action; a one-shot query.
//
// Params: {"channel": "..."}.

import { ConvexClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { Watch, clientOptions, describeError, run, settle, within } from "./lib.mjs";

const bodies = (list) => (Array.isArray(list) ? list.map((message) => message.body) : list);

run(async (url, { channel }, partial) => {
  const a = new ConvexClient(url, clientOptions);
  const b = new ConvexClient(url, clientOptions);
  const list = new Watch("A's messages:list");
  a.onUpdate(api.messages.list, { channel }, list.push, list.fail);
  partial.list = list.values;

  const initial = await list.until((value) => Array.isArray(value), "first result");

  const started = Date.now();
  const firstId = await within(b.mutation(api.messages.send, { channel, author: "b", body: "one" }),
    "B's mutation messages:send");
  await list.until((value) => value.some((message) => message._id === firstId), "B's first message");
  const liveMs = Date.now() - started;

  const secondId = await within(b.mutation(api.messages.send, { channel, author: "b", body: "two" }),
    "B's second mutation");
  const ownId = await within(a.mutation(api.messages.send, { channel, author: "a", body: "three" }),
    "A's own mutation");
  // Once A's own mutation resolves, A's subscription already shows it
  // (the client resolves a mutation only at a Transition that reflects it).
  const afterOwn = bodies(a.client.localQueryResult("messages:list", { channel }));
  await list.until((value) => value.some((message) => message._id === secondId) &&
    value.some((message) => message._id === ownId), "B's second and A's own message");

  const failed = await settle(b.mutation(api.messages.fail, { channel, body: "refused" }), "messages:fail");
  const crashed = await settle(b.mutation(api.messages.crash, {}), "messages:crash");
  const shouted = await settle(b.action(api.messages.shout, { channel, body: "loud" }), "action messages:shout");
  await list.until((value) => value.some((message) => message.body === "LOUD"), "the action's message");
  const oneShot = await settle(a.query(api.messages.count, { channel }), "one-shot query messages:count");

  const queryErrors = new Watch("A's failing_list errors");
  a.onUpdate(api.messages.failing_list, {}, queryErrors.push, (error) => queryErrors.push({ error: describeError(error) }));
  const queryFailure = await queryErrors.until((value) => value && value.error, "the failing query's error");

  await a.close();
  await b.close();
  return {
    initial: bodies(initial),
    liveMs,
    afterOwn,
    updates: list.values.map(bodies),
    listErrors: list.errors,
    failed,
    crashed,
    shouted,
    oneShot,
    queryFailure: queryFailure.error,
  };
});
