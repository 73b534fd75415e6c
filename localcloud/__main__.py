"""``python -m localcloud --port P --seed FILE [--state FILE] [--root DIR]``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from localcloud.cloud import DEFAULT_SEED, Cloud
from localcloud.server import serve_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localcloud", description="A local Alibaba Cloud on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=9000, help="TCP port (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=Path, default=DEFAULT_SEED, help="seed JSON (default: a small fleet)")
    parser.add_argument("--state", type=Path, default=None, help="persist state to this file across restarts")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="project root holding functions/")
    args = parser.parse_args(argv)
    try:
        cloud = Cloud.from_seed_file(args.seed, root=args.root, state_file=args.state)
    except (OSError, ValueError, KeyError) as exc:
        print(f"localcloud: cannot load seed {args.seed}: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve_forever(cloud, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
