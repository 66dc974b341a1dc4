// A mutation whose response is lost is applied once: the FrameTap between
// this client and the server drops the connection instead of delivering
// the first MutationResponse. The npm client reconnects with the same
// sessionId and re-sends the Mutation with the same requestId; the server
// must answer from its record of (sessionId, requestId) rather than run it
// again (PROTOCOL.md 5.1).
//
// Params: {"channel": "..."}.

import { ConvexClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { Watch, clientOptions, run, settle } from "./lib.mjs";

run(async (url, { channel }, partial) => {
  const client = new ConvexClient(url, clientOptions);
  const list = new Watch("messages:list");
  client.onUpdate(api.messages.list, { channel }, list.push, list.fail);
  partial.updates = list.values;
  await list.until((value) => Array.isArray(value), "the first result");
  const sent = await settle(client.mutation(api.messages.send, { channel, author: "a", body: "once" }),
    "the mutation whose response the tap drops", 20000);
  partial.sent = sent;
  const final = await list.until((value) => value.some((m) => m.body === "once"), "the message in the list");
  const state = client.connectionState();
  await client.close();
  return {
    sent,
    final: final.map((m) => ({ id: m._id, body: m.body })),
    connectionCount: state.connectionCount,
  };
});
