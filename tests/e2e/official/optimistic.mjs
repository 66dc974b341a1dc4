// Optimistic updates with the npm BaseConvexClient (what ConvexReactClient and
// ConvexClient are built on): the local result of a subscribed list after
// every transition the client makes, while
//   1. a mutation that fails (messages:fail, AppError) carries an optimistic
//      update: the optimistic message appears at once, then disappears;
//   2. a mutation that succeeds (messages:send) carries one: the optimistic
//      message is replaced by the real one, never shown twice.
//
// Params: {"channel": "..."}; the channel holds one message "seed".

import { BaseConvexClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { Watch, clientOptions, run, settle } from "./lib.mjs";

const OPTIMISTIC_ID = "optimistic-id";

function addOptimistic(channel, body) {
  return (store) => {
    const current = store.getQuery(api.messages.list, { channel });
    if (current === undefined) return;
    store.setQuery(api.messages.list, { channel }, [
      ...current,
      { _id: OPTIMISTIC_ID, _creationTime: Date.now(), channel, author: "me", body },
    ]);
  };
}

run(async (url, { channel }, partial) => {
  const local = new Watch("local messages:list");
  partial.local = local.values;
  let client;
  const snapshot = () => {
    let value;
    try {
      value = client.localQueryResult("messages:list", { channel });
    } catch (error) {
      return { error: String(error.message) };
    }
    return value === undefined ? null : value.map((message) => `${message.body}@${message._id === OPTIMISTIC_ID ? "optimistic" : "server"}`);
  };
  client = new BaseConvexClient(url, () => local.push(snapshot()), clientOptions);
  client.subscribe("messages:list", { channel });
  await local.until((value) => Array.isArray(value) && value.includes("seed@server"), "the seeded list");

  // 1. The failing mutation.
  const failing = client.mutation("messages:fail", { channel, body: "doomed" },
    { optimisticUpdate: addOptimistic(channel, "doomed") });
  const rightAfterFailingCall = snapshot();
  const failed = await settle(failing, "messages:fail with an optimistic update");
  const afterFailure = snapshot();
  const failureMark = local.values.length;

  // 2. The succeeding mutation.
  const succeeding = client.mutation("messages:send", { channel, author: "me", body: "kept" },
    { optimisticUpdate: addOptimistic(channel, "kept") });
  const rightAfterSendCall = snapshot();
  const sent = await settle(succeeding, "messages:send with an optimistic update");
  const afterSend = snapshot();

  await client.close();
  return {
    sequence: local.values,
    failureMark,
    rightAfterFailingCall,
    failed,
    afterFailure,
    rightAfterSendCall,
    sent,
    afterSend,
  };
});
