#!/usr/bin/env python3
"""An Action Cable client for spec/integration/rails_spec.rb (python3-websockets 10.x, asyncio).

Speaks what Action Cable's JavaScript consumer speaks (sub-protocol actioncable-v1-json):
the server's {"type": "welcome"}, {"command": "subscribe", "identifier": "<JSON>"} answered
with {"type": "confirm_subscription"}, {"command": "message", "identifier": ..., "data":
"<JSON with action>"} and broadcasts {"identifier": ..., "message": {...}}. The server's
{"type": "ping"} messages are skipped (and counted) wherever they come.

Reads one JSON request on stdin, prints one JSON result on stdout. Every wait has a deadline;
a failure or a timeout ends the run with "error" set ("<client>: <what>").

Mode "chat" (the default): every client connects (to url?name=<client>), reads the welcome,
subscribes to `channel` and reads the confirmation; then, if `announce` is given, that URL is
POSTed once and every client must receive the broadcast it makes; then each client in turn
performs `speak` with text "<text> from <client>" and every client (the speaker too) must
receive that broadcast next.
  {"url": "ws://127.0.0.1:3000/cable", "clients": ["alice", "bob"], "channel": "ChatChannel",
   "text": "hello", "announce": "http://127.0.0.1:3000/announce?text=hi", "timeout": 5}
  -> {"clients": {"alice": {"subprotocol": "actioncable-v1-json", "welcome": {...},
      "confirm": {...}, "received": [{"text": "hello from alice", "from": "alice"}, ...],
      "pings": 0}, ...}, "announced": 204, "error": null}
  "received" holds the `message` of each broadcast, in arrival order.

Mode "connect": one connection (url as given, no name added) that records every message
until the server closes it or `listen` seconds pass.
  {"mode": "connect", "url": "ws://127.0.0.1:3000/cable?name=intruder", "listen": 3}
  -> {"subprotocol": "...", "messages": [{"type": "welcome"}, ...], "close": {"code": 1000,
      "reason": ""}, "closed_by_server": true, "status": null, "error": null}
  "status" is the HTTP status of a refused handshake. With "subscribe": "<channel>", a
  subscribe command for that channel is sent right after the connection opens (the welcome,
  the confirmation and every broadcast are then among "messages", pings too).
"""

import asyncio
import json
import sys
import time
import urllib.request

import websockets

PROTOCOL = "actioncable-v1-json"


def compact(value):
    """JSON as Action Cable's JavaScript consumer writes it (JSON.stringify: no spaces)."""
    return json.dumps(value, separators=(",", ":"))


def describe(error):
    return f"{type(error).__name__}: {error}"


def connect(url, timeout):
    return websockets.connect(
        url,
        subprotocols=[PROTOCOL, "actioncable-unsupported"],
        open_timeout=timeout,
        close_timeout=min(timeout, 5),
        ping_interval=None,
    )


class Client:
    def __init__(self, name, url, timeout):
        self.name = name
        self.url = url
        self.timeout = timeout
        self.ws = None
        self.identifier = None
        self.report = {"subprotocol": None, "welcome": None, "confirm": None, "received": [],
                       "pings": 0}

    async def open(self):
        separator = "&" if "?" in self.url else "?"
        self.ws = await asyncio.wait_for(connect(f"{self.url}{separator}name={self.name}", self.timeout),
                                         self.timeout + 1)
        self.report["subprotocol"] = self.ws.subprotocol

    async def next_message(self, what):
        """The next message that is not a ping, within the timeout."""
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {what} within {self.timeout}s")
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no {what} within {self.timeout}s") from None
            message = json.loads(raw)
            if message.get("type") == "ping":
                self.report["pings"] += 1
                continue
            return message

    async def welcome(self):
        message = await self.next_message("welcome")
        if message.get("type") != "welcome":
            raise AssertionError(f"expected a welcome, got {message!r}")
        self.report["welcome"] = message

    async def subscribe(self, channel):
        self.identifier = compact({"channel": channel})
        await self.ws.send(compact({"command": "subscribe", "identifier": self.identifier}))
        message = await self.next_message("confirm_subscription")
        if message.get("type") != "confirm_subscription" or message.get("identifier") != self.identifier:
            raise AssertionError(f"expected confirm_subscription, got {message!r}")
        self.report["confirm"] = message

    async def perform(self, action, **data):
        payload = dict(data, action=action)
        await self.ws.send(compact({"command": "message", "identifier": self.identifier,
                                    "data": compact(payload)}))

    async def broadcast(self, what):
        message = await self.next_message(what)
        if message.get("identifier") != self.identifier or "message" not in message:
            raise AssertionError(f"expected a broadcast ({what}), got {message!r}")
        self.report["received"].append(message["message"])
        return message["message"]

    async def close(self):
        if self.ws is None:
            return
        try:
            await asyncio.wait_for(self.ws.close(), self.timeout + 1)
        except Exception:  # noqa: BLE001 - the connection may be long gone
            self.ws.transport.abort()


def http_post(url, timeout):
    request = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status


async def step(client, coroutine):
    """Runs a client's step; a failure names the client."""
    try:
        return await coroutine
    except Exception as error:  # noqa: BLE001
        raise RuntimeError(f"{client.name}: {describe(error)}") from error


async def chat(request):
    timeout = request.get("timeout", 5)
    channel = request.get("channel", "ChatChannel")
    text = request.get("text", "hello")
    clients = [Client(name, request["url"], timeout) for name in request.get("clients", ["alice"])]
    result = {"clients": {c.name: c.report for c in clients}, "announced": None, "error": None}
    try:
        for client in clients:
            await step(client, client.open())
            await step(client, client.welcome())
            await step(client, client.subscribe(channel))
        if request.get("announce"):
            loop = asyncio.get_running_loop()
            result["announced"] = await loop.run_in_executor(None, http_post, request["announce"], timeout)
            await asyncio.gather(*(step(c, c.broadcast("the announcement")) for c in clients))
        for speaker in clients:
            await step(speaker, speaker.perform("speak", text=f"{text} from {speaker.name}"))
            await asyncio.gather(*(step(c, c.broadcast(f"{speaker.name}'s message")) for c in clients))
    except Exception as error:  # noqa: BLE001 - any failure is the answer
        result["error"] = str(error) if isinstance(error, RuntimeError) else describe(error)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return result


async def connect_only(request):
    timeout = request.get("timeout", 5)
    listen = request.get("listen", 3)
    result = {"subprotocol": None, "messages": [], "close": None, "closed_by_server": False,
              "status": None, "error": None}
    try:
        ws = await asyncio.wait_for(connect(request["url"], timeout), timeout + 1)
    except websockets.exceptions.InvalidStatusCode as error:
        result["status"] = error.status_code
        result["error"] = describe(error)
        return result
    except Exception as error:  # noqa: BLE001
        result["error"] = describe(error)
        return result
    result["subprotocol"] = ws.subprotocol
    deadline = time.monotonic() + listen
    try:
        if request.get("subscribe"):
            await ws.send(compact({"command": "subscribe",
                                   "identifier": compact({"channel": request["subscribe"]})}))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                raw = await asyncio.wait_for(ws.recv(), left)
            except asyncio.TimeoutError:
                break
            result["messages"].append(json.loads(raw))
    except websockets.exceptions.ConnectionClosed:
        result["closed_by_server"] = True
    except Exception as error:  # noqa: BLE001
        result["error"] = describe(error)
    finally:
        try:
            await asyncio.wait_for(ws.close(), timeout + 1)
        except Exception:  # noqa: BLE001
            ws.transport.abort()
        result["close"] = {"code": ws.close_code, "reason": ws.close_reason}
    return result


def main():
    request = json.load(sys.stdin)
    runner = connect_only if request.get("mode") == "connect" else chat
    print(json.dumps(asyncio.run(runner(request))))


if __name__ == "__main__":
    main()
