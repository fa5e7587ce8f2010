"""Start daphne with Herald's heartbeat and a redacting access log: ``python -m config.serve``.

daphne's heartbeat is a command-line option (``daphne --help``), not a Django setting, so this
wrapper turns ``HERALD_WS_HEARTBEAT`` (docs/deployment.md, default 25 s) into
``--ping-interval N --ping-timeout 2N`` (a peer missing two pings is dropped), and replaces
daphne's access log with one that never writes a ``?token=`` or ``?ticket=`` value. On SIGTERM or SIGINT every open WebSocket gets a
close frame with 1001 ("going away", RFC 6455 §7.4.1) before daphne stops; plain daphne drops
them without one (clients see 1006). Other arguments pass through to daphne, e.g.
``python -m config.serve -b 0.0.0.0 -p 8000``; the application defaults to
``config.asgi:application``.

``--worker`` (``make run``) also starts one background worker, ``manage.py herald_worker``, as a
child process with this environment, and stops it (SIGTERM: it finishes its current task) when
daphne stops; on Linux the worker also dies if this process is killed. In production run the
workers as their own services instead (docs/deployment.md, "Background workers").
"""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import daphne.cli
from daphne.access import AccessLogGenerator
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

from config.logging import redact


class RedactingAccessLog(AccessLogGenerator):
    """daphne's NCSA-style access log with credentials in paths replaced by ``[redacted]``."""

    def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):  # type: ignore[no-untyped-def]
        super().write_entry(host, date, redact(request), status, length, ident, user)


SHUTDOWN_GRACE = 1.0  # s between the 1001 close frames and the reactor stopping


class GracefulServer(Server):
    """daphne's server, closing every WebSocket with 1001 when the process is told to stop."""

    def run(self) -> None:
        from twisted.internet import reactor

        reactor.addSystemEventTrigger("before", "shutdown", self.close_websockets)
        super().run()

    def close_websockets(self) -> object:
        """Send 1001 to every open socket; the shutdown waits ``SHUTDOWN_GRACE`` s for them to go
        out (a Deferred returned from a "before" trigger delays the stop, Twisted docs)."""
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        sockets = [p for p in list(self.connections) if isinstance(p, WebSocketProtocol)]
        for protocol in sockets:
            with contextlib.suppress(Exception):  # one already closing must not stop the rest
                # sendCloseFrame, not sendClose: autobahn refuses 1001 from application code
                protocol.sendCloseFrame(code=1001, isReply=False)
        return deferLater(reactor, SHUTDOWN_GRACE if sockets else 0, lambda: None)


def daphne_argv(args: list[str]) -> list[str]:
    """daphne's arguments: heartbeat options from the environment, then ``args``."""
    heartbeat = int(os.environ.get("HERALD_WS_HEARTBEAT", "25"))
    argv = ["--ping-interval", str(heartbeat), "--ping-timeout", str(2 * heartbeat), *args]
    if not any(":" in a and not a.startswith("-") for a in args):
        argv.append("config.asgi:application")
    return argv


WORKER_STOP_TIMEOUT = 15.0  # s for the worker to finish its task after SIGTERM, then SIGKILL


def _die_with_parent() -> None:  # runs in the worker, between fork and exec
    with contextlib.suppress(Exception):  # Linux only: PR_SET_PDEATHSIG = 1
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def start_worker() -> subprocess.Popen[bytes]:
    """``manage.py herald_worker`` beside this process, in a session of its own (a Ctrl-C in
    the terminal reaches only this process, which then stops the worker once)."""
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(  # noqa: S603 (a fixed argv: this interpreter, manage.py)
        [sys.executable, str(root / "manage.py"), "herald_worker"],
        cwd=root,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the worker finishes its current task), SIGKILL after ``WORKER_STOP_TIMEOUT``."""
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(WORKER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def main() -> None:
    """Run daphne in this process with :func:`daphne_argv`; ``--worker``: and one worker."""
    args = sys.argv[1:]
    worker = start_worker() if "--worker" in args else None
    args = [a for a in args if a != "--worker"]
    daphne.cli.AccessLogGenerator = RedactingAccessLog  # type: ignore[misc]
    daphne.cli.CommandLineInterface.server_class = GracefulServer
    try:
        daphne.cli.CommandLineInterface().run(daphne_argv(args))
    finally:
        if worker is not None:
            stop_worker(worker)


if __name__ == "__main__":
    main()
