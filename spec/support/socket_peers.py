#!/usr/bin/env python3
"""Peers for the iodine client specs (spec/integration/clients_spec.rb), written with
Python's own asyncio and the `websockets` package (10.x, legacy asyncio API).

    socket_peers.py MODE

binds 127.0.0.1 on a free port, prints "PORT <n>" on stdout, and serves until its stdin
reaches EOF (the spec holds the other end of a pipe, so an aborted run never leaves it behind).

Modes:
  ws      a WebSocket server. Each connection first gets one text message, the JSON
          {"path": request path, "headers": [[name, value], ...] as the request had them},
          then every message comes back as it came (text as text, binary as binary). The
          text message "stats" is answered with {"pongs": N, "at": [seconds, ...]}: how many
          pings this connection's client sent (websockets answers each with a pong) and when,
          in seconds since the TCP connection was made; "close" makes the
          server close the connection with code 4000 "bye"; "fragments" is answered with one
          text message "one two three" sent in three frames. On the path /keepalive the server
          first pings the client 5 times, 0.2 s apart, each pong awaited for at most 1 s
          (none: Close 1011), then sends {"answered": 5}. A request for a path starting with
          /404 is refused with "HTTP/1.1 404 Not Found". The server sends no pings of its own
          otherwise.
  echo    a TCP echo server (asyncio streams, backlog 4096): what comes in goes back out.
  silent  accepts TCP connections and never sends a byte (nor closes them).
"""

import asyncio
import json
import resource
import sys
import time
from http import HTTPStatus

import websockets
import websockets.legacy.server


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(hard, 20000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class CountingProtocol(websockets.legacy.server.WebSocketServerProtocol):
    """Counts the pongs it sends, i.e. the pings the client sent, and when (seconds since
    the connection was made)."""

    pongs = 0

    def connection_made(self, transport):
        self.born = time.monotonic()
        self.pong_times = []
        super().connection_made(transport)

    async def pong(self, data=b""):
        self.pongs += 1
        self.pong_times.append(round(time.monotonic() - self.born, 3))
        await super().pong(data)


async def refuse_404(path, _headers):
    if path.startswith("/404"):
        return HTTPStatus.NOT_FOUND, [("Content-Type", "text/plain")], b"no such socket\n"
    return None


async def ws_handler(websocket, path):
    await websocket.send(json.dumps({"path": path, "headers": list(websocket.request_headers.raw_items())}))
    try:
        if path.startswith("/keepalive"):
            answered = 0
            for _ in range(5):
                await asyncio.sleep(0.2)
                try:
                    await asyncio.wait_for(await websocket.ping(), 1)
                except asyncio.TimeoutError:
                    await websocket.close(1011, "no pong")
                    return
                answered += 1
            await websocket.send(json.dumps({"answered": answered}))
        async for message in websocket:
            if message == "stats":
                await websocket.send(json.dumps({"pongs": websocket.pongs, "at": websocket.pong_times}))
            elif message == "fragments":
                await websocket.send(["one ", "two ", "three"])
            elif message == "close":
                await websocket.close(4000, "bye")
            else:
                await websocket.send(message)
    except websockets.ConnectionClosed:
        pass


async def echo_handler(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


HELD = []


async def silent_handler(reader, writer):
    HELD.append(writer)  # never answers, never closes


async def wait_for_stdin_eof():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def main(mode):
    raise_fd_limit()
    if mode == "ws":
        server = await websockets.serve(ws_handler, "127.0.0.1", 0, create_protocol=CountingProtocol,
                                        process_request=refuse_404, max_size=4 * 1024 * 1024,
                                        ping_interval=None)
    elif mode == "echo":
        server = await asyncio.start_server(echo_handler, "127.0.0.1", 0, backlog=4096)
    elif mode == "silent":
        server = await asyncio.start_server(silent_handler, "127.0.0.1", 0)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    port = server.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)
    await wait_for_stdin_eof()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
