// JWT auth with the npm clients: ConvexClient.setAuth(fetchToken, onChange)
// with a valid, an expired and a forged token (three clients at once), plus
// ConvexHttpClient.setAuth with the valid and the forged one.
//
// valid:   onChange(true); auth:whoami (query, mutation, action) shows the
//          subject; after clearAuth the query shows null again;
// expired, forged: onChange(false) once the client gives up, and auth:whoami
//          shows null (the client carries on unauthenticated).
//
// Params: {"tokens": {"valid", "expired", "forged"}, "subject"}.

import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import { Watch, clientOptions, describeError, run, settle, sleep } from "./lib.mjs";

const AUTH_TIMEOUT_MS = 25000; // A rejected token is retried with backoff before the client gives up.

async function withToken(url, name, token, subject, partial) {
  const client = new ConvexClient(url, clientOptions);
  const who = new Watch(`${name}: auth:whoami`);
  const changes = new Watch(`${name}: onChange`);
  const fetches = [];
  partial[name] = { who: who.values, changes: changes.values, fetches };
  client.onUpdate(api.auth.whoami, {}, who.push, who.fail);
  client.setAuth(async ({ forceRefreshToken }) => {
    fetches.push(forceRefreshToken);
    return token;
  }, changes.push);
  const outcome = { changes: changes.values, fetches, who: who.values, whoErrors: who.errors };
  if (name === "valid") {
    await changes.until((value) => value === true, "onChange(true)", AUTH_TIMEOUT_MS);
    await who.until((value) => value && value.subject === subject, "whoami to show the subject");
    outcome.mutation = await settle(client.mutation(api.auth.whoami_mutation, {}), "whoami_mutation");
    outcome.action = await settle(client.action(api.auth.whoami_action, {}), "whoami_action");
    client.client.clearAuth();
    await who.until((value) => value === null, "whoami to show null after clearAuth");
    outcome.afterClear = who.latest();
  } else {
    await changes.until((value) => value === false, "onChange(false)", AUTH_TIMEOUT_MS);
    await who.until((value) => value === null, "whoami to show null");
    // The client carries on unauthenticated: a mutation still works.
    outcome.mutation = await settle(client.mutation(api.auth.whoami_mutation, {}), "whoami_mutation");
    await sleep(200); // Any late identity change would show here.
  }
  outcome.final = who.latest();
  await client.close();
  return outcome;
}

async function overHttp(url, token) {
  const client = new ConvexHttpClient(url, { logger: false });
  client.setAuth(token);
  try {
    return { ok: true, value: await client.query(api.auth.whoami, {}) };
  } catch (error) {
    return { ok: false, error: describeError(error) };
  }
}

run(async (url, { tokens, subject }, partial) => {
  const [valid, expired, forged] = await Promise.all(
    ["valid", "expired", "forged"].map((name) => withToken(url, name, tokens[name], subject, partial)));
  const http = {
    valid: await overHttp(url, tokens.valid),
    expired: await overHttp(url, tokens.expired),
    forged: await overHttp(url, tokens.forged),
  };
  return { valid, expired, forged, http };
}, 60000);
