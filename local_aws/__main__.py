"""``python -m local_aws [--host 127.0.0.1] [--port 4566] [--state-dir .local_aws] [--time-scale 1]``.

``--time-scale N`` (or ``LOCAL_AWS_TIME_SCALE``) makes local_aws's simulated minutes N times
shorter: metric periods, alarm evaluation, scaling cooldowns, blue/green waits. 1 is AWS-exact.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from local_aws.infra.clock import TIME_SCALE_ENV, Clock
from local_aws.protocol.server import LocalAwsServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local_aws", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback unless you mean it)")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--state-dir", default=".local_aws", help="where jobs and endpoints keep files")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help=f"divide simulated minutes by this (default ${TIME_SCALE_ENV} or 1, AWS-exact)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        clock = Clock(args.time_scale) if args.time_scale is not None else Clock.from_environment()
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = LocalAwsServer(args.state_dir, host=args.host, port=args.port, clock=clock).start()
    where = f"state in {args.state_dir}, time scale {clock.scale:g}"
    print(f"local_aws ready on {server.url} ({where})", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
