"""Benchmark localcloud's OpenAPI path: latency added to a describe, and sustained requests/s.

Not a test: prints numbers. Targets (issue #2): a describe adds < 1 ms p50 on loopback, and the
server sustains >= 1000 req/s on 2 cores.

- latency: p50/p99 of tea-openapi ``call_api`` DescribeInstanceAttribute (ACS3) against
  localcloud, and against a bare aiohttp server that answers the same body without any work; the
  difference is what localcloud adds (signature check, replay checks, faults, model, call log).
- throughput: client processes, each with keep-alive connections on threads, sending HMAC-SHA1
  signed GETs (a fresh nonce each) for a few seconds; every reply must be a 200.

Both servers run in their own process, as ``python -m localcloud`` does, so the client's GIL does
not slow the server down.

Usage::

    .venv/bin/python bench/bench_localcloud.py [--calls 2000] [--seconds 5] [--procs 2] [--threads 4]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

ROOT = Path(__file__).resolve().parent.parent
AK_ID = "LTAI5tBenchAccessKey01"
AK_SECRET = "bench-secret-0123456789"
INSTANCE = "r-bp1demo0000000004"

BARE_SERVER = """
import json, sys
from aiohttp import web
body = json.dumps(json.loads(sys.argv[1])).encode()
async def answer(request):
    await request.read()
    return web.Response(body=body, headers={"Content-Type": "application/json;charset=utf-8"})
app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None,
            print=lambda *a: print("ready", flush=True))
"""


def start_localcloud() -> tuple[subprocess.Popen[str], int]:
    seed = json.loads((ROOT / "localcloud" / "seeds" / "default.json").read_text())
    # Another key of the seed's account: the seeded instances are that account's own.
    account_id = seed["accounts"][0]["account_id"]
    seed["accounts"].append(
        {"account_id": account_id, "access_key_id": AK_ID, "access_key_secret": AK_SECRET}
    )
    seed_file = Path(tempfile.mkstemp(suffix=".json")[1])
    seed_file.write_text(json.dumps(seed))
    proc = subprocess.Popen(
        [sys.executable, "-m", "localcloud", "--port", "0", "--seed", str(seed_file)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "localcloud listening on http://127.0.0.1:PORT"
    return proc, int(line.rsplit(":", 1)[1])


def start_bare(body: dict[str, Any], port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE_SERVER, json.dumps(body), str(port)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def tea_describe(port: int) -> Callable[[], dict[str, Any]]:
    from alibabacloud_tea_openapi import utils_models as api
    from alibabacloud_tea_openapi.client import Client
    from alibabacloud_tea_openapi.models import Config
    from darabonba.runtime import RuntimeOptions

    config = Config(
        endpoint=f"127.0.0.1:{port}",
        protocol="http",
        access_key_id=AK_ID,
        access_key_secret=AK_SECRET,
        region_id="cn-hangzhou",
    )
    client = Client(config)
    params = api.Params(
        action="DescribeInstanceAttribute",
        version="2015-01-01",
        protocol="HTTP",
        pathname="/",
        method="POST",
        auth_type="AK",
        style="RPC",
        req_body_type="formData",
        body_type="json",
    )
    request = api.OpenApiRequest(query={"InstanceId": INSTANCE})
    runtime = RuntimeOptions()

    def call() -> dict[str, Any]:
        return client.call_api(params, request, runtime)["body"]

    return call


def latencies(call: Callable[[], object], n: int) -> list[float]:
    for _ in range(50):
        call()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def signed_path() -> str:
    params = {
        "Action": "DescribeInstanceAttribute",
        "Version": "2015-01-01",
        "Format": "JSON",
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "SignatureNonce": uuid.uuid4().hex,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": AK_ID,
        "InstanceId": INSTANCE,
    }
    canonical = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(params.items()))
    to_sign = "GET&%2F&" + quote(canonical, safe="~")
    digest = hmac.new(f"{AK_SECRET}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    params["Signature"] = base64.b64encode(digest).decode()
    return "/?" + urlencode(params)


def hammer(port: int, seconds: float, threads: int, out: multiprocessing.Queue[tuple[int, int]]) -> None:
    counts = [0] * threads
    errors = [0] * threads
    deadline = time.perf_counter() + seconds

    def loop(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            conn.request("GET", signed_path())
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                counts[i] += 1
            else:
                errors[i] += 1
        conn.close()

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((sum(counts), sum(errors)))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    localcloud, port = start_localcloud()
    try:
        describe = tea_describe(port)
        body = describe()
        bare = start_bare(body, port + 1 if port < 65000 else port - 1)
        try:
            bare_times = latencies(tea_describe(port + 1 if port < 65000 else port - 1), args.calls)
        finally:
            bare.terminate()
        lc_times = latencies(describe, args.calls)
        added = statistics.median(lc_times) - statistics.median(bare_times)
        print(f"tea-openapi call_api DescribeInstanceAttribute, {args.calls} calls, ms:")
        print(f"  bare aiohttp     p50 {statistics.median(bare_times):6.3f}  p99 {p(bare_times, 99):6.3f}")
        print(f"  localcloud       p50 {statistics.median(lc_times):6.3f}  p99 {p(lc_times, 99):6.3f}")
        print(f"  added by localcloud p50 {added:6.3f} ms  (target < 1 ms)")

        queue: multiprocessing.Queue[tuple[int, int]] = multiprocessing.Queue()
        procs = [
            multiprocessing.Process(target=hammer, args=(port, args.seconds, args.threads, queue))
            for _ in range(args.procs)
        ]
        for proc in procs:
            proc.start()
        results = [queue.get() for _ in procs]
        for proc in procs:
            proc.join()
        ok = sum(r[0] for r in results)
        failed = sum(r[1] for r in results)
        print(
            f"throughput: {ok / args.seconds:,.0f} req/s of 200s over {args.seconds:g}s "
            f"({args.procs} client procs x {args.threads} keep-alive threads; {failed} non-200)"
            "  (target >= 1000)"
        )
    finally:
        localcloud.terminate()
        localcloud.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
