"""`python -m localcloud --port PORT --state-dir DIR [--machines qemu]`: run localcloud in the
foreground. SIGTERM or Ctrl-C stops it and every VM it runs."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from localcloud.app import LocalCloud, make_server
from localcloud.s3 import start_servers


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="localcloud", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="the API port")
    parser.add_argument(
        "--s3-port",
        type=int,
        default=None,
        help="first S3 port (one per region: fr-par, nl-ams, pl-waw); default PORT+1",
    )
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument(
        "--machines",
        choices=("timer", "qemu"),
        default=None,
        help="what runs servers: timer (states only) or qemu (VMs); default $LOCALCLOUD_MACHINES"
        " or timer",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    endpoints, s3_servers = start_servers(args.host, args.s3_port or args.port + 1)
    cloud = LocalCloud(args.state_dir, s3_endpoints=endpoints, machines=args.machines)
    server = make_server(cloud, args.host, args.port)
    info = {"api_url": f"http://{args.host}:{server.server_address[1]}", "s3": endpoints}
    (args.state_dir / "endpoints.json").write_text(json.dumps(info))
    print(f"localcloud API on {info['api_url']}; S3 {endpoints}", flush=True)

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        for s3 in s3_servers:
            s3.stop()  # type: ignore[attr-defined]
        cloud.shutdown()
        sys.exit(0)


if __name__ == "__main__":
    main()
