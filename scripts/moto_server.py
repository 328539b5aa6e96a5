"""Runs the moto AWS emulator on 127.0.0.1 for one test process or `make dev`.

Usage: moto_server.py [PORT]   (0 or none: a free port)

Prints the port on the first line of stdout, then serves until stdin reaches
end-of-file, which happens when the process that started it exits, even if it
crashed, so no emulator outlives its owner.
"""

import logging
import socket
import sys

from moto.server import ThreadedMotoServer

port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
if port:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind(("127.0.0.1", port))
    except OSError as err:
        print(f"error: cannot listen on 127.0.0.1:{port}: {err.strerror}", file=sys.stderr)
        sys.exit(2)
    finally:
        probe.close()

# One line per AWS call is noise in `make dev`; errors still show.
logging.getLogger("werkzeug").setLevel(logging.ERROR)

server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
try:
    sys.stdin.read()
except KeyboardInterrupt:
    pass
server.stop()
