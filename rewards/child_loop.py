"""The request loop of a sandboxed child process (actors/scoring_sandbox.py's scorer, rewards/prm/verify.py's
tool verifier): say ready, then answer every message on the pipe until the parent sends None or hangs up."""
from __future__ import annotations


def serve_requests(conn, answer) -> None:
    """`answer(message)` -> the reply; it must not raise (each caller maps its failures to a reply)."""
    conn.send(("ready", None))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            break
        if message is None:
            break
        reply = answer(message)
        try:
            conn.send(reply)
        except Exception as e:         # noqa: BLE001 - e.g. an unpicklable result: still one reply per message
            conn.send(("error", f"unsendable result: {type(e).__name__}"))
