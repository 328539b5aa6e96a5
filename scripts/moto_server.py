"""Runs the moto AWS emulator on 127.0.0.1 for one test process or `make dev`.

Usage: moto_server.py [PORT]   (0 or none: a free port)

Prints the port on the first line of stdout, then serves until stdin reaches
end-of-file, which happens when the process that started it exits, even if it
crashed, so no emulator outlives its owner.

DynamoDB calls are served one at a time, but for reads by key. DynamoDB
applies each conditional write atomically; the emulator checks a condition
and then writes, so two concurrent writes could both pass the same
condition. Serialising its DynamoDB calls gives the tests and `make dev` the
atomicity the real service has (the concurrency tests depend on it). Reads by
key (GetItem, BatchGetItem) need no such order and are not held behind
writes, as in the real service, where a burst of writes (a slow-lane batch
recording its timeouts) does not delay the next batch's read. Other services
(SQS long polls) stay concurrent.

One emulator function is replaced by an equivalent that does less work: the
retention check of each message a receive returns read every queue
attribute, each a pass over all the queue's messages, so a receive from a
queue holding a thousand delayed messages (a paced recovery) took most of a
second. The replacement reads the retention period alone: same rule.
"""

import logging
import socket
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.core.utils import unix_time
from moto.sqs.models import SQSBackend
from werkzeug.serving import make_server


def retained(self, queue_name, message):
    """The message is within its queue's retention period."""
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = retained

port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
if port:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As the server itself binds: a connection of the last run still in
    # TIME_WAIT does not make the port busy.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", port))
    except OSError as err:
        print(f"error: cannot listen on 127.0.0.1:{port}: {err.strerror}", file=sys.stderr)
        sys.exit(2)
    finally:
        probe.close()

# One line per AWS call is noise in `make dev`; errors still show.
logging.getLogger("werkzeug").setLevel(logging.ERROR)

app = DomainDispatcherApplication(create_backend_app)
dynamodb = threading.Lock()


# Reads by key: a lookup each, never an iteration over a table.
READS_BY_KEY = ("DynamoDB_20120810.GetItem", "DynamoDB_20120810.BatchGetItem")


def serialized(environ, start_response):
    """The emulator, with DynamoDB calls one at a time (see above)."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("DynamoDB") and target not in READS_BY_KEY:
        with dynamodb:
            return list(app(environ, start_response))
    return app(environ, start_response)


server = make_server("127.0.0.1", port, serialized, threaded=True, request_handler=MotoRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], flush=True)
try:
    sys.stdin.read()
except KeyboardInterrupt:
    pass
server.shutdown()
