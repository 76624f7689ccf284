"""A recording webhook receiver: the programmable far end for tests, the demo and the benchmark.

    POST /hooks/{endpoint_id}   record one delivery and answer as that endpoint's Behaviour says
    GET  /stats                 JSON counts per endpoint (statuses, bad signatures, max in flight)
    POST /reset                 forget records and counts (behaviours stay)

Every request is recorded on arrival, before any latency, with the answer it will get
(None: held open until the client gives up). Signatures are checked with the
`standardwebhooks` package, written by others, so our signer is tested against theirs.

In process: `RecordingReceiver` (in the caller's loop) or `ReceiverThread` (own thread and
loop, for sync code). As a process: `python -m dispatcher.receiver --help`.

    model.py       Behaviour, Received, per-endpoint counts and answer choice (pure)
    signatures.py  Standard Webhooks verification per endpoint (pure)
    output.py      the --print arrival line, the exit summary, stats-file rows (pure)
    server.py      RecordingReceiver: the aiohttp app in the caller's loop
    thread.py      ReceiverThread: the same in its own thread and loop
    cli.py         `python -m dispatcher.receiver` (main)
"""

from dispatcher.receiver.cli import main
from dispatcher.receiver.model import Behaviour, Received
from dispatcher.receiver.server import RecordingReceiver
from dispatcher.receiver.thread import ReceiverThread

__all__ = ["Behaviour", "Received", "ReceiverThread", "RecordingReceiver", "main"]
