// Pagination under concurrent inserts with the npm ConvexClient's
// onPaginatedUpdate_experimental (the same PaginatedQueryClient logic as
// usePaginatedQuery): client A loads pages of items:page with loadMore while
// client B inserts (and, with `deleteEvery`, deletes) items at random
// ranks, so writes land inside pages A already holds as well as past them. When B is done and A has loaded every
// page, A's concatenated pages must equal the whole ordered group exactly
// once each. Every intermediate result is also recorded: it must never hold
// an item twice and must stay in rank order.
//
// Params: {"group", "pageSize", "insertCount", "deleteEvery", "seed"}; the
// group is seeded beforehand (over HTTP) with items at random ranks. With
// deleteEvery N > 0, every Nth write of B deletes the item nearest a random rank.

import { ConvexClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { Watch, clientOptions, run, sleep, within } from "./lib.mjs";

// A small deterministic generator, so a failing run can be replayed by seed.
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

function problems(results) {
  const found = [];
  const seen = new Set();
  for (let i = 0; i < results.length; i++) {
    if (seen.has(results[i]._id)) found.push(`duplicate ${results[i].label}`);
    seen.add(results[i]._id);
    if (i > 0 && results[i - 1].rank > results[i].rank) {
      found.push(`out of order at ${i}: ${results[i - 1].rank} > ${results[i].rank}`);
    }
  }
  return found;
}

run(async (url, { group, pageSize, insertCount, deleteEvery = 0, seed }, partial) => {
  const a = new ConvexClient(url, clientOptions);
  const b = new ConvexClient(url, clientOptions);
  const next = random(seed);
  const updates = new Watch("A's paginated items:page");
  const badSnapshots = [];
  partial.badSnapshots = badSnapshots;
  partial.statuses = [];
  const unsubscribe = a.onPaginatedUpdate_experimental(api.items.page, { group }, { initialNumItems: pageSize },
    (result) => {
      const found = problems(result.results);
      if (found.length) badSnapshots.push({ status: result.status, length: result.results.length, problems: found });
      partial.statuses.push(`${result.status}:${result.results.length}`);
      updates.push(result);
    },
    updates.fail);

  // B writes one item at a time, with short pauses, while A pages.
  let inserted = 0;
  let deleted = 0;
  const inserting = (async () => {
    for (let i = 0; i < insertCount; i++) {
      const rank = Math.floor(next() * 1000);
      if (deleteEvery > 0 && i % deleteEvery === deleteEvery - 1) {
        const label = await within(b.mutation(api.items.remove_near, { group, rank }), `B's delete ${i}`);
        if (label !== null) deleted++;
      } else {
        await within(b.mutation(api.items.add, { group, rank, label: `live-${i}` }), `B's insert ${i}`);
        inserted++;
      }
      await sleep(15);
    }
  })();

  let loadMoreCalls = 0;
  for (;;) {
    const result = await updates.until((value) => value.status !== "LoadingFirstPage" && value.status !== "LoadingMore",
      `a settled status after ${loadMoreCalls} loadMore calls`);
    if (result.status === "Exhausted") break;
    if (result.loadMore(pageSize)) loadMoreCalls++;
    // Let B's inserts interleave with page loads.
    await sleep(10);
    if (loadMoreCalls > 500) throw new Error("more than 500 loadMore calls: pages never end");
  }
  await within(inserting, "B's inserts");
  partial.inserted = inserted;

  const expected = await within(b.query(api.items.ordered, { group }), "items:ordered");
  const expectedIds = expected.map((item) => item._id);
  const same = (result) => result.results.length === expectedIds.length &&
    result.results.every((item, i) => item._id === expectedIds[i]);
  let final;
  try {
    final = await updates.until((value) => value.status === "Exhausted" && same(value),
      `pages to converge on the ${expectedIds.length} items of the group`);
  } catch (error) {
    final = updates.latest();
    partial.converged = false;
  }
  const finalIds = final.results.map((item) => item._id);
  const expectedSet = new Set(expectedIds);
  const finalSet = new Set(finalIds);
  unsubscribe();
  await a.close();
  await b.close();
  return {
    loadMoreCalls,
    inserted,
    deleted,
    expectedCount: expectedIds.length,
    finalCount: finalIds.length,
    finalStatus: final.status,
    equal: finalIds.length === expectedIds.length && finalIds.every((id, i) => id === expectedIds[i]),
    missing: expected.filter((item) => !finalSet.has(item._id)).map((item) => `${item.label}@${item.rank}`),
    extra: final.results.filter((item) => !expectedSet.has(item._id)).map((item) => `${item.label}@${item.rank}`),
    finalProblems: problems(final.results),
    badSnapshots: badSnapshots.slice(0, 20),
    badSnapshotCount: badSnapshots.length,
    updateCount: updates.values.length,
  };
});
