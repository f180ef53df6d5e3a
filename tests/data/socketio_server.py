"""A Socket.IO v4 server (python-socketio under uvicorn) for wsfleet's tests and examples.

    python tests/data/socketio_server.py [--port P] [--ping-interval S] [--ping-timeout S]

Binds 127.0.0.1 (port 0, the default, lets the kernel pick), prints `port N` once it listens,
and counts everything it receives and sends; `GET /stats` answers the counts as JSON:
  connect.<namespace>, refused.<namespace>, disconnect.<reason>, received.<event>,
  acks_sent, sent.<event>, upload_bytes, answers (acknowledgements the clients sent).

Events of the main namespace `/`:
  echo(*args)           -> acknowledged with the same arguments
  join(room)            -> enters the room, acknowledged with its name
  say(room, text)       -> `said` {"room", "text", "from"} to everyone in the room
  upload(meta, bytes)   -> `download` {"name", "data": bytes} back to the sender,
                           acknowledged with the number of bytes
  kick()                -> the server disconnects the sender
  quiz(n)               -> asks the sender `question` {"n"} with an acknowledgement (sio.call)
                           and acknowledges the quiz with the sender's answer
Namespace `/admin` accepts a connection whose auth payload is {"token": "secret"} and refuses
any other with `Not authorized`; its event `status()` is acknowledged with "ok".
"""

import argparse
import collections
import json
import socket

import socketio
import uvicorn

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--ping-interval", type=float, default=25)
parser.add_argument("--ping-timeout", type=float, default=20)
options = parser.parse_args()

sio = socketio.AsyncServer(
    async_mode="asgi",
    ping_interval=options.ping_interval,
    ping_timeout=options.ping_timeout,
    logger=False,
    engineio_logger=False,
)
counts = collections.Counter()


def received(event):
    counts["received." + event] += 1


def acked(value):
    counts["acks_sent"] += 1
    return value


@sio.on("connect")
async def connect(sid, environ, auth=None):
    counts["connect./"] += 1


@sio.on("disconnect")
async def disconnect(sid, reason=None):
    counts["disconnect." + str(reason)] += 1


@sio.on("echo")
async def echo(sid, *args):
    received("echo")
    return acked(args)


@sio.on("join")
async def join(sid, room):
    received("join")
    await sio.enter_room(sid, room)
    return acked(room)


@sio.on("say")
async def say(sid, room, text):
    received("say")
    recipients = sum(1 for _ in sio.manager.get_participants("/", room))
    counts["sent.said"] += recipients
    await sio.emit("said", {"room": room, "text": text, "from": sid}, room=room)


@sio.on("upload")
async def upload(sid, meta, data):
    received("upload")
    counts["upload_bytes"] += len(data)
    counts["sent.download"] += 1
    await sio.emit("download", {"name": meta.get("name"), "data": data}, to=sid)
    return acked(len(data))


@sio.on("kick")
async def kick(sid):
    received("kick")
    await sio.disconnect(sid)


@sio.on("quiz")
async def quiz(sid, n):
    received("quiz")
    counts["sent.question"] += 1
    answer = await sio.call("question", {"n": n}, to=sid, timeout=5)
    counts["answers"] += 1
    return acked(answer)


@sio.on("connect", namespace="/admin")
async def admin_connect(sid, environ, auth=None):
    if not isinstance(auth, dict) or auth.get("token") != "secret":
        counts["refused./admin"] += 1
        raise socketio.exceptions.ConnectionRefusedError("Not authorized")
    counts["connect./admin"] += 1


@sio.on("disconnect", namespace="/admin")
async def admin_disconnect(sid, reason=None):
    counts["disconnect./admin." + str(reason)] += 1


@sio.on("status", namespace="/admin")
async def status(sid):
    received("/admin.status")
    return acked("ok")


async def stats(scope, receive, send):
    """Answers `GET /stats`; everything else that is not Socket.IO is a 404."""
    if scope["type"] != "http":
        return
    found = scope["path"] == "/stats"
    body = json.dumps(counts).encode() if found else b"not found"
    await send(
        {
            "type": "http.response.start",
            "status": 200 if found else 404,
            "headers": [(b"content-type", b"application/json" if found else b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": body})


app = socketio.ASGIApp(sio, other_asgi_app=stats)

if __name__ == "__main__":
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", options.port))
    listener.listen(1024)
    # Listening already: connections made from now on wait in the backlog until uvicorn serves.
    print("port", listener.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    uvicorn.Server(config).run(sockets=[listener])
