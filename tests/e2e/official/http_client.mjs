// npm ConvexHttpClient against the HTTP API: query, mutation, action,
// ConvexError data, a plain function error, bad arguments, an unknown function.
//
// Params: {"channel": "..."}.

import { ConvexHttpClient } from "convex/browser";
import { anyApi } from "convex/server";
import { describeError, run, settle } from "./lib.mjs";

const api = anyApi;

run(async (url, { channel }, partial) => {
  const client = new ConvexHttpClient(url, { logger: false });
  const sent = await settle(client.mutation(api.messages.send, { channel, author: "http", body: "hello" }), "send");
  partial.sent = sent;
  const listed = await settle(client.query(api.messages.list, { channel }), "list");
  const shouted = await settle(client.action(api.messages.shout, { channel, body: "hey" }), "shout");
  const listedAfter = await settle(client.query(api.messages.list, { channel }), "list after action");
  const failed = await settle(client.mutation(api.messages.fail, { channel, body: "nope" }), "fail");
  const crashed = await settle(client.mutation(api.messages.crash, {}), "crash");
  const badArgs = await settle(client.mutation(api.messages.send, { channel, body: 42 }), "bad args");
  const unknown = await settle(client.query(api.messages.nowhere, {}), "unknown function");
  const count = await settle(client.query(api.messages.count, { channel }), "count");
  const failedIsConvexError = failed.ok ? null : failed.error.name;
  let thrown = null;
  try {
    await client.mutation(api.messages.fail, { channel, body: "again" });
  } catch (error) {
    thrown = { ...describeError(error), isConvexError: error.name === "ConvexError" || describeError(error).name === "ConvexError" };
  }
  return { sent, listed, shouted, listedAfter, failed, failedIsConvexError, crashed, badArgs, unknown, count, thrown };
});
