#!/usr/bin/env python3
"""Many WebSocket subscribers against a cluster (spec/integration/cluster_spec.rb), with
the `websockets` package (10.x, asyncio API). The app is spec/support/apps/cluster.ru.

Reads one JSON request on stdin, prints one JSON result on stdout:
  {"url": "ws://127.0.0.1:PORT/ws?sub=CH", "channel": "CH", "clients": 1000, "count": 20,
   "timeout": 60, "connect_parallel": 50}
Each client connects (at most connect_parallel handshakes at a time) and reads its first
message, "pid:PID" (the worker it landed on; the app subscribed it to CH before that). Once
every client is there, the first client of each worker sends "pubn CH p<PID>- COUNT": that
worker publishes p<PID>-0 ... p<PID>-(COUNT-1) to CH. Every client must then receive
exactly the COUNT messages of every publisher, each publisher's in order, and nothing else
for a moment after.
  -> {"connected": 1000, "ok": 1000, "pids": {"PID": n, ...}, "publishers": ["PID", ...],
      "failures": ["c7: ..."] (at most 10), "failed": n, "seconds": 3.2}
"""

import asyncio
import json
import resource
import sys
import time

import websockets


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 20000 if hard == resource.RLIM_INFINITY else min(hard, 20000)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def run(request):
    clients = request["clients"]
    count = request["count"]
    channel = request["channel"]
    timeout = request.get("timeout", 60)
    gate = asyncio.Semaphore(request.get("connect_parallel", 50))
    everyone_here = asyncio.Event()
    here = 0
    pids = {}
    publishers = {}
    stats = {"connected": 0, "ok": 0, "failures": [], "failed": 0}
    started = time.monotonic()

    def arrive():
        nonlocal here
        here += 1
        if here == clients:
            everyone_here.set()

    def fail(c, error):
        stats["failed"] += 1
        if len(stats["failures"]) < 10:
            stats["failures"].append(f"c{c}: {type(error).__name__}: {error}")

    async def client(c):
        arrived = False
        ws = None
        try:
            async with gate:
                ws = await websockets.connect(request["url"], open_timeout=timeout, close_timeout=5,
                                              ping_interval=None, max_size=2**20)
                first = await ws.recv()
            if not isinstance(first, str) or not first.startswith("pid:"):
                raise AssertionError(f"first message {first!r}")
            pid = first[4:]
            pids[pid] = pids.get(pid, 0) + 1
            stats["connected"] += 1
            publishers.setdefault(pid, ws)
            arrive()
            arrived = True
            await everyone_here.wait()
            expected = {f"p{p}-": 0 for p in publishers}
            want = count * len(expected)
            for n in range(want):
                got = await ws.recv()
                prefix, _, index = got.rpartition("-") if isinstance(got, str) else ("", "", "")
                prefix += "-"
                if prefix not in expected:
                    raise AssertionError(f"message {n}: unexpected {got!r}")
                if index != str(expected[prefix]):
                    raise AssertionError(f"message {n}: {got!r}, expected {prefix}{expected[prefix]}")
                expected[prefix] += 1
            try:
                extra = await asyncio.wait_for(ws.recv(), 0.3)
                raise AssertionError(f"an extra message {extra!r}")
            except asyncio.TimeoutError:
                pass
            stats["ok"] += 1
        except Exception as error:  # noqa: BLE001 - any failure is the answer
            fail(c, error)
            if not arrived:
                arrive()
        finally:
            if ws is not None:
                try:
                    await asyncio.wait_for(ws.close(), 5)
                except Exception:  # noqa: BLE001
                    ws.transport.abort()

    async def publish():
        await everyone_here.wait()
        for pid, ws in list(publishers.items()):
            await ws.send(f"pubn {channel} p{pid}- {count}")

    tasks = [asyncio.create_task(client(c)) for c in range(clients)]
    tasks.append(asyncio.create_task(publish()))
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        stats["failures"].append(f"{len(pending)} tasks still running after {timeout}s")
    stats["pids"] = pids
    stats["publishers"] = list(publishers)
    stats["seconds"] = round(time.monotonic() - started, 2)
    return stats


def main():
    raise_fd_limit()
    request = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(run(request))))


if __name__ == "__main__":
    main()
