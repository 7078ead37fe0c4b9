#!/usr/bin/env python3
"""A WebSocket client for the integration specs (python3-websockets 10.x, asyncio API).

Reads one JSON request on stdin, prints one JSON result on stdout. Every step has a
deadline; a step that fails or takes too long ends the run with "error" set.

Script mode (the default): one connection runs its steps in order.
  {"url": "ws://127.0.0.1:3000/?id=a", "headers": {"X-A": "b"}, "subprotocols": ["chat"],
   "timeout": 5, "steps": [
     {"send": "text"}, {"send_hex": "00ff"}, {"send_fragments": ["a", "b"]}, {"recv": 2},
     {"ping": "payload"}, {"get": "http://127.0.0.1:3000/publish?ch=a&msg=b"},
     {"sleep": 0.2}, {"close": 4001, "reason": "bye"}, {"recv_until_closed": true}]}
  -> {"received": [["text", "..."], ["binary", "<hex>"]], "pongs": 1, "gets": ["<body>"],
      "close": {"code": 4001, "reason": "bye"}, "status": null, "subprotocol": "chat",
      "headers": {"set-cookie": "a=b"}, "error": null}
  "status" is the HTTP status of a refused handshake; "close" the code and reason the
  server sent in its Close frame (1006: none).

Fleet mode: many connections at once, each the same conversation.
  {"mode": "fleet", "url": "...", "clients": 1000, "timeout": 60, "connect_parallel": 100,
   "hello": "ready", "trigger": "http://...", "send": "c{c}-m{i}", "count": 100,
   "expect": "msg-{i}"}
  Each client connects (at most connect_parallel handshakes at a time), reads the message
  `hello` if given, and waits until every client got that far; then one GET of `trigger`
  (if given) goes out, each client sends `count` messages from the `send` template (if
  given; {c} is the client's number, {i} the message's) and reads `count` messages that
  must equal the `expect` template (default: what it sent), in order.
  -> {"connected": 1000, "ok": 1000, "failed": 0, "failures": ["c7: ..."], "seconds": 3.2}
"""

import asyncio
import json
import resource
import sys
import time
import urllib.request

import websockets


def describe(error):
    return f"{type(error).__name__}: {error}"


def entry(message):
    if isinstance(message, str):
        return ["text", message]
    return ["binary", message.hex()]


def http_get(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode("utf-8", "replace")


async def fetch(url, timeout):
    return await asyncio.get_running_loop().run_in_executor(None, http_get, url, timeout)


def connect(request):
    timeout = request.get("timeout", 5)
    return websockets.connect(
        request["url"],
        extra_headers=request.get("headers") or {},
        subprotocols=request.get("subprotocols"),
        open_timeout=timeout,
        close_timeout=min(timeout, 5),
        ping_interval=None,
        max_size=2**24,
    )


async def run_step(ws, step, result, timeout):
    if "send" in step:
        await ws.send(step["send"])
    elif "send_hex" in step:
        await ws.send(bytes.fromhex(step["send_hex"]))
    elif "send_fragments" in step:
        await ws.send(iter(step["send_fragments"]))
    elif "recv" in step:
        for _ in range(step["recv"]):
            result["received"].append(entry(await ws.recv()))
    elif "recv_until_closed" in step:
        try:
            while True:
                result["received"].append(entry(await ws.recv()))
        except websockets.exceptions.ConnectionClosed:
            pass
    elif "ping" in step:
        waiter = await ws.ping(step["ping"])
        await waiter
        result["pongs"] += 1
    elif "get" in step:
        result["gets"].append(await fetch(step["get"], timeout))
    elif "sleep" in step:
        await asyncio.sleep(step["sleep"])
    elif "close" in step:
        await ws.close(step["close"], step.get("reason", ""))
    else:
        raise ValueError(f"unknown step {step!r}")


async def run_script(request):
    timeout = request.get("timeout", 5)
    result = {"received": [], "pongs": 0, "gets": [], "close": None, "status": None,
              "subprotocol": None, "headers": {}, "error": None}
    try:
        ws = await asyncio.wait_for(connect(request), timeout + 1)
    except websockets.exceptions.InvalidStatusCode as error:
        result["status"] = error.status_code
        result["error"] = describe(error)
        return result
    except Exception as error:  # noqa: BLE001 - any failure is the answer
        result["error"] = describe(error)
        return result
    result["subprotocol"] = ws.subprotocol
    for name, value in ws.response_headers.raw_items():
        key = name.lower()
        result["headers"][key] = value if key not in result["headers"] else result["headers"][key] + "\n" + value
    try:
        for number, step in enumerate(request.get("steps", [])):
            try:
                await asyncio.wait_for(run_step(ws, step, result, timeout), step.get("timeout", timeout))
            except asyncio.TimeoutError:
                raise TimeoutError(f"step {number} {step!r} took more than {step.get('timeout', timeout)}s")
    except Exception as error:  # noqa: BLE001
        result["error"] = describe(error)
    finally:
        try:
            await asyncio.wait_for(ws.close(), timeout + 1)
        except Exception:  # noqa: BLE001 - the connection may be long gone
            ws.transport.abort()
        result["close"] = {"code": ws.close_code, "reason": ws.close_reason}
    return result


async def run_fleet(request):
    clients = request["clients"]
    count = request.get("count", 0)
    send = request.get("send")
    expect = request.get("expect", send)
    hello = request.get("hello")
    trigger = request.get("trigger")
    timeout = request.get("timeout", 60)
    gate = asyncio.Semaphore(request.get("connect_parallel", 100))
    everyone_here = asyncio.Event()
    here = 0
    stats = {"connected": 0, "ok": 0, "failures": []}
    started = time.monotonic()

    def arrive():
        nonlocal here
        here += 1
        if here == clients:
            everyone_here.set()

    async def client(c):
        arrived = False
        ws = None
        try:
            async with gate:
                ws = await connect(request)
            stats["connected"] += 1
            if hello is not None:
                got = await ws.recv()
                if got != hello:
                    raise AssertionError(f"first message {got!r}, expected {hello!r}")
            arrive()
            arrived = True
            await everyone_here.wait()
            if send is not None:
                for i in range(count):
                    await ws.send(send.format(c=c, i=i))
            for i in range(count):
                got = await ws.recv()
                want = expect.format(c=c, i=i)
                if got != want:
                    raise AssertionError(f"message {i}: {got!r}, expected {want!r}")
            await ws.close()
            stats["ok"] += 1
        except Exception as error:  # noqa: BLE001
            stats["failures"].append(f"c{c}: {describe(error)}")
            if not arrived:
                arrive()
        finally:
            if ws is not None and not ws.closed:
                ws.transport.abort()

    async def fire():
        await everyone_here.wait()
        if trigger:
            stats["trigger"] = await fetch(trigger, timeout)

    tasks = [asyncio.create_task(client(c)) for c in range(clients)]
    tasks.append(asyncio.create_task(fire()))
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        stats["failures"].append(f"{len(pending)} tasks still running after {timeout}s")
    stats["failed"] = len(stats["failures"])
    stats["failures"] = stats["failures"][:20]
    stats["seconds"] = round(time.monotonic() - started, 2)
    return stats


def raise_open_files_limit():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def main():
    request = json.load(sys.stdin)
    raise_open_files_limit()
    runner = run_fleet if request.get("mode") == "fleet" else run_script
    print(json.dumps(asyncio.run(runner(request))))


if __name__ == "__main__":
    main()
