"""A GraphQL server for wsfleet's protocol tests: strawberry-graphql under uvicorn, bound to
127.0.0.1 on a port the kernel picks or `--port` names (printed first on stdout as `port N`), speaking both
`graphql-transport-ws` and the legacy `graphql-ws` at /graphql (and queries over HTTP POST there).

Schema:
  query    hello(name)                     -> "hello NAME"
  query    boom                            -> a resolver that raises (counted as a query)
  query    stats                           -> what the server counted so far (not counted itself)
  mutation publish(topic, text)            -> how many subscribers it reached
  subscription count(to, intervalMs)       -> 1..to, one event every intervalMs, then complete
  subscription messages(topic, greet)      -> every text published to topic while subscribed;
                                             with greet, "subscribed" first, once registered
  subscription fail(after)                 -> `after` events, then an error

connection_init: a payload `{"token": "refuse"}` is refused (graphql-transport-ws closes 4403,
graphql-ws answers `connection_error`); any other is acknowledged with `{"server": "strawberry"}`.
graphql-ws connections get a `ka` every `--ka SECONDS` (0.5 by default).

The counts (connections acknowledged and refused, queries, mutations, subscriptions started,
events sent, subscriptions ended, resolver errors raised) let a test compare wsfleet's own counts
with the server's. They are printed as JSON on SIGTERM too.
"""

import argparse
import asyncio
import json
import signal
import socket
import sys
from collections import defaultdict
from typing import AsyncGenerator

import strawberry
import uvicorn
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

COUNTS = defaultdict(int)
TOPICS = defaultdict(set)


@strawberry.type
class Stats:
    queries: int
    mutations: int
    subscriptions: int
    events: int
    ended: int
    errors: int
    connections: int
    refused: int


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        COUNTS["queries"] += 1
        return f"hello {name}"

    @strawberry.field
    def stats(self) -> Stats:
        return Stats(
            queries=COUNTS["queries"],
            mutations=COUNTS["mutations"],
            subscriptions=COUNTS["subscriptions"],
            events=COUNTS["events"],
            ended=COUNTS["ended"],
            errors=COUNTS["errors"],
            connections=COUNTS["connections"],
            refused=COUNTS["refused"],
        )

    @strawberry.field
    def boom(self) -> str:
        COUNTS["queries"] += 1
        COUNTS["errors"] += 1
        raise ValueError("boom on purpose")


@strawberry.type
class Mutation:
    @strawberry.mutation
    def publish(self, topic: str, text: str) -> int:
        COUNTS["mutations"] += 1
        queues = list(TOPICS[topic])
        for queue in queues:
            queue.put_nowait(text)
        return len(queues)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, to: int, interval_ms: int = 10) -> AsyncGenerator[int, None]:
        COUNTS["subscriptions"] += 1
        try:
            for value in range(1, to + 1):
                await asyncio.sleep(interval_ms / 1000)
                COUNTS["events"] += 1
                yield value
        finally:
            COUNTS["ended"] += 1

    @strawberry.subscription
    async def messages(self, topic: str, greet: bool = False) -> AsyncGenerator[str, None]:
        COUNTS["subscriptions"] += 1
        queue = asyncio.Queue()
        TOPICS[topic].add(queue)
        try:
            if greet:
                # Tells the client it is registered: a publish from now on reaches it.
                COUNTS["events"] += 1
                yield "subscribed"
            while True:
                text = await queue.get()
                COUNTS["events"] += 1
                yield text
        finally:
            TOPICS[topic].discard(queue)
            COUNTS["ended"] += 1

    @strawberry.subscription
    async def fail(self, after: int = 0) -> AsyncGenerator[int, None]:
        COUNTS["subscriptions"] += 1
        try:
            for value in range(after):
                COUNTS["events"] += 1
                yield value
            COUNTS["errors"] += 1
            raise ValueError("failed on purpose")
        finally:
            COUNTS["ended"] += 1


class Server(GraphQL):
    async def on_ws_connect(self, context):
        params = context.get("connection_params") or {}
        if params.get("token") == "refuse":
            COUNTS["refused"] += 1
            raise ConnectionRejectionError({"message": "token refused"})
        COUNTS["connections"] += 1
        return {"server": "strawberry"}


schema = strawberry.Schema(query=Query, mutation=Mutation, subscription=Subscription)


def main() -> None:
    arguments = argparse.ArgumentParser()
    arguments.add_argument("--ka", type=float, default=0.5, help="seconds between graphql-ws keep-alives")
    arguments.add_argument("--port", type=int, default=0, help="the port (0: one the kernel picks)")
    options = arguments.parse_args()
    ka = options.ka
    app = Server(
        schema,
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL],
        keep_alive=True,
        keep_alive_interval=ka,
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", options.port))
    listener.listen(128)
    print(f"port {listener.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))

    def report(*_):
        print(json.dumps(dict(COUNTS)), flush=True)
        server.should_exit = True

    signal.signal(signal.SIGTERM, report)
    server.run(sockets=[listener])


if __name__ == "__main__":
    sys.exit(main())
