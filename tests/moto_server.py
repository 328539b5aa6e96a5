"""Runs the moto AWS emulator on a free loopback port for one test process.

Prints the port on the first line of stdout, then serves until stdin reaches
end-of-file, which happens when the test process that started it exits, even
if it crashed.
"""

import sys

from moto.server import ThreadedMotoServer

server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
