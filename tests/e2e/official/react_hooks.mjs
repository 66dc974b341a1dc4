// The npm client's React API as an app uses it: ConvexReactClient under a
// ConvexProvider, components calling useQuery, useMutation (with an
// optimistic update), useAction and usePaginatedQuery, rendered by
// react-test-renderer (React 18, no DOM needed). A second, plain
// ConvexClient writes from outside, as another user would.
//
// Each component records what every render saw; the script waits on those
// records, so it sees exactly what a rendered app would show.
//
// Params: {"channel", "group", "pageSize", "seeded"}; the group is seeded
// beforehand (over HTTP) with `seeded` items at ranks 0..seeded-1.

import React from "react";
import TestRenderer, { act } from "react-test-renderer";
import { ConvexProvider, ConvexReactClient, useAction, useMutation, usePaginatedQuery, useQuery }
  from "convex/react";
import { ConvexClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { Watch, clientOptions, run, within } from "./lib.mjs";

const h = React.createElement;
const OPTIMISTIC_ID = "optimistic-id";

function bodies(messages) {
  if (messages === undefined) return null;
  return messages.map((m) => `${m.body}@${m._id === OPTIMISTIC_ID ? "optimistic" : "server"}`);
}

run(async (url, { channel, group, pageSize, seeded }, partial) => {
  const reactClient = new ConvexReactClient(url, clientOptions);
  const other = new ConvexClient(url, clientOptions);
  const messages = new Watch("useQuery(messages:list)");
  const pages = new Watch("usePaginatedQuery(items:page)");
  const handles = {};
  partial.messages = messages.values;
  partial.pages = pages.values;

  function Messages() {
    const list = useQuery(api.messages.list, { channel });
    handles.send = useMutation(api.messages.send).withOptimisticUpdate((store, args) => {
      const current = store.getQuery(api.messages.list, { channel: args.channel });
      if (current === undefined) return;
      store.setQuery(api.messages.list, { channel: args.channel }, [
        ...current, { _id: OPTIMISTIC_ID, _creationTime: Date.now(), ...args }]);
    });
    handles.shout = useAction(api.messages.shout);
    messages.push(bodies(list));
    return h("ul", null, (list ?? []).map((m) => h("li", { key: m._id }, m.body)));
  }

  function Pages() {
    const { results, status, loadMore } = usePaginatedQuery(api.items.page, { group },
      { initialNumItems: pageSize });
    handles.loadMore = loadMore;
    pages.push({ status, labels: results.map((item) => item.label) });
    return h("ol", null, results.map((item) => h("li", { key: item._id }, item.label)));
  }

  let renderer;
  act(() => {
    renderer = TestRenderer.create(
      h(ConvexProvider, { client: reactClient }, h(Messages), h(Pages)));
  });

  const initial = await messages.until((v) => Array.isArray(v), "the first result");
  const firstPage = await pages.until((v) => v.status === "CanLoadMore", "the first page");

  // Another client's write shows up in the rendered component.
  await within(other.mutation(api.messages.send, { channel, author: "other", body: "from-other" }),
    "the other client's mutation");
  const afterOther = await messages.until((v) => v && v.includes("from-other@server"),
    "the other client's message rendered");

  // useMutation with an optimistic update: shown at once, then the server's row, once.
  let sending;
  act(() => {
    sending = handles.send({ channel, author: "me", body: "mine" });
  });
  const optimistic = await messages.until((v) => v && v.includes("mine@optimistic"),
    "the optimistic message rendered");
  await within(sending, "useMutation's promise");
  const confirmed = await messages.until(
    (v) => v && v.includes("mine@server") && !v.includes("mine@optimistic"),
    "the server's row replacing the optimistic one");

  // useAction: runs a mutation whose write the query shows.
  const shouted = await within(handles.shout({ channel, body: "loud" }), "useAction's promise");
  const afterAction = await messages.until((v) => v && v.includes("LOUD@server"), "the action's write rendered");

  // usePaginatedQuery: load every page while the other client inserts.
  await within(other.mutation(api.items.add, { group, rank: -1, label: "first" }), "an insert before page 1");
  let loadMoreCalls = 0;
  for (;;) {
    const state = await pages.until((v) => v.status === "CanLoadMore" || v.status === "Exhausted",
      `a settled page status after ${loadMoreCalls} loadMore calls`);
    if (state.status === "Exhausted") break;
    act(() => handles.loadMore(pageSize));
    loadMoreCalls++;
    if (loadMoreCalls === 1) {
      await within(other.mutation(api.items.add, { group, rank: seeded + 1, label: "last" }),
        "an insert past the loaded pages");
    }
    if (loadMoreCalls > 100) throw new Error("more than 100 loadMore calls: pages never end");
  }
  const expected = ["first", ...Array.from({ length: seeded }, (_, i) => `seed-${i}`), "last"];
  const allPages = await pages.until(
    (v) => v.status === "Exhausted" && v.labels.join() === expected.join(),
    "every page, with both inserts, in rank order");

  act(() => renderer.unmount());
  await reactClient.close();
  await other.close();
  return {
    initial,
    firstPage,
    afterOther,
    optimistic,
    confirmed,
    shouted,
    afterAction,
    loadMoreCalls,
    allPages,
    renderedMessages: messages.values.length,
  };
});
