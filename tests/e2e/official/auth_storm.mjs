// Many npm clients whose tokens the server refuses at once: each gets an
// AuthError and a closed socket while its client may be closing too. The
// server must answer them all and keep serving (checked afterwards with a
// plain query).
//
// Params: {"token": "<forged or expired JWT>", "clients": N}.

import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { Watch, clientOptions, run, settle } from "./lib.mjs";

run(async (url, { token, clients }, partial) => {
  const outcomes = await Promise.all(Array.from({ length: clients }, async (_, i) => {
    const client = new ConvexClient(url, clientOptions);
    const changes = new Watch(`client ${i}: onChange`);
    client.setAuth(async () => token, changes.push);
    const who = new Watch(`client ${i}: auth:whoami`);
    client.onUpdate(api.auth.whoami, {}, who.push, who.fail);
    await changes.until((value) => value === false, "onChange(false)", 25000);
    await who.until((value) => value === null, "whoami to show null", 25000);
    await client.close();
    return changes.values;
  }));
  partial.outcomes = outcomes;
  const alive = await settle(new ConvexHttpClient(url, { logger: false }).query(api.messages.count, { channel: "x" }),
    "a query after the storm");
  return { outcomes, alive };
}, 55000);
