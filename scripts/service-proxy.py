#!/usr/bin/env python3
# A stand-in for a Kubernetes Service in local benchmarks (scripts/bench-rollout): a round-robin
# TCP proxy that routes new connections only to upstreams whose admin /readyz answers 200
# (polled every 100 ms), as a Service routes only to ready pods' endpoints.
# Usage: service-proxy.py <listen port> <player port>:<admin port> ...   (all on 127.0.0.1)
import asyncio, itertools, sys
UP = [tuple(int(x) for x in a.split(":")) for a in sys.argv[2:]]  # player:admin
ready = {p: False for p, _ in UP}
rr = itertools.count()
async def probe():
    while True:
        for p, a in UP:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", a), 0.2)
                w.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); await w.drain()
                line = await asyncio.wait_for(r.readline(), 0.2)
                ready[p] = b" 200 " in line
                w.close()
            except Exception:
                ready[p] = False
        await asyncio.sleep(0.1)
async def pipe(r, w):
    try:
        while True:
            d = await r.read(65536)
            if not d: break
            w.write(d); await w.drain()
    except Exception: pass
    finally:
        try: w.close()
        except Exception: pass
async def handle(cr, cw):
    live = [p for p, _ in UP if ready[p]] or [p for p, _ in UP]
    port = live[next(rr) % len(live)]
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        cw.close(); return
    await asyncio.gather(pipe(cr, uw), pipe(ur, cw))
async def main():
    asyncio.ensure_future(probe())
    srv = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    async with srv: await srv.serve_forever()
asyncio.run(main())
