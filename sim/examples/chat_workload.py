"""A workload for examples/chat: clients post messages; the newest
acknowledged message must be in the final listing (messages:list shows the
latest messages only).

    eddy sim run --seed 1 --app examples/chat --workload sim/examples/chat_workload.py

docs/simulation.md explains each method.
"""

from sim.workloads import Check


class ChatWorkload:
    name = "chat"

    async def setup(self, client):
        op = await client.call("mutation", "channels:create", {"name": "general"})
        self.channel = op.value

    async def step(self, client):
        body = f"hello {client.rng.randrange(10**6)}"
        await client.call("mutation", "messages:send",
                          {"channel": self.channel, "author": f"c{client.id}", "body": body})

    async def finish(self, client):
        await client.call("query", "messages:list", {"channel": self.channel})

    def wrote(self, op):
        return op.path == "messages:send"

    def check(self, record):
        sent = [op for op in record.history if op.path == "messages:send" and op.status == "ok"]
        lists = [op for op in record.history if op.path == "messages:list" and op.status == "ok"]
        if not sent or not lists:
            return [Check("chat: the newest message is listed", True, "nothing to check")]
        newest = max(sent, key=lambda op: op.ts)
        listed = {message["body"] for message in lists[-1].value}
        if newest.args["body"] in listed:
            return [Check("chat: the newest message is listed", True)]
        return [Check("chat: the newest message is listed", False,
                      f"{newest.args['body']!r}, acknowledged at ts {newest.ts}, is not in "
                      f"the final listing")]


workload = ChatWorkload()
