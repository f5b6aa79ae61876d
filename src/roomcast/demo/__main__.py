"""python -m roomcast.demo [--host 127.0.0.1] [--port 5000] [--client-js PATH]"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from roomcast import _speedups
from roomcast.demo.app import create_app

# Where scripts/demo.sh (npm install --prefix .demo) and the test harness put the client.
CLIENT_CANDIDATES = (
    Path(".demo/node_modules/socket.io-client/dist/socket.io.min.js"),
    Path("tests/js/node_modules/socket.io-client/dist/socket.io.min.js"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roomcast.demo",
                                     description="roomcast demo: chat rooms and a news feed")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--client-js", type=Path,
                        help="socket.io.min.js from the socket.io-client npm package "
                             "(default: found under .demo/ or tests/js/)")
    args = parser.parse_args(argv)

    client_js = args.client_js or next((p for p in CLIENT_CANDIDATES if p.is_file()), None)
    if client_js is None or not client_js.is_file():
        parser.error("socket.io.min.js not found: run `bash scripts/demo.sh`, or "
                     "`npm install --prefix .demo socket.io-client@4.8` and pass --client-js")
    io, app = create_app(client_js.resolve())
    core = "compiled" if _speedups.USING_EXTENSIONS else "pure-Python"
    print(f"roomcast demo ({core} core) on http://{args.host}:{args.port}  (Ctrl-C stops)",
          flush=True)
    try:
        io.run(host=args.host, port=args.port, app=app)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror} "
              "(choose another with --port)", file=sys.stderr)
        return 1
    finally:
        io.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
