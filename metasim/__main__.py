"""`python -m metasim --port P`: serve the simulator on 127.0.0.1 (no environment needed).

Prints `metasim listening on http://127.0.0.1:P` to stderr as it starts; GET /_sim/state
answers once it is up. Populate it with --accounts/--stories or through POST /_sim/... .
"""

from __future__ import annotations

import argparse
import json
import sys

import uvicorn

from metasim.app import create_app
from metasim.world.world import World


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m metasim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--accounts", type=int, default=0, help="accounts to create at start")
    parser.add_argument("--stories", type=int, default=0, help="stories per account")
    parser.add_argument(
        "--minute-seconds",
        type=float,
        default=60.0,
        help="length of a throttle 'minute' in seconds",
    )
    parser.add_argument("--page-size", type=int, default=25)
    parser.add_argument(
        "--print-accounts",
        action="store_true",
        help="print the created accounts (with tokens) as JSON lines",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    world = World(minute_seconds=args.minute_seconds, page_size=args.page_size)
    created = world.populate(accounts=args.accounts, stories_per_account=args.stories)
    if args.print_accounts:
        for account in created:
            print(json.dumps(account.to_dict()))
    config = uvicorn.Config(
        create_app(world), host=args.host, port=args.port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    print(f"metasim listening on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    server.run()


if __name__ == "__main__":
    main()
