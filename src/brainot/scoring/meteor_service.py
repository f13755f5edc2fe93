"""One METEOR JVM for every score job of a local Snakemake run.

pycocoevalcap's ``Meteor()`` starts ``java -jar meteor-1.5.jar - - -stdio -l en -norm``, and the JVM loads
METEOR's 62 MB paraphrase table before it scores anything: 10 s and 13 CPU-seconds per start on the 2-core demo
machine, against well under a second to score 150 captions. A score job per run (each a cell of the tables)
would start one JVM each: 14 in the demo, about a sixth of its CPU time.

So for the length of a local Snakemake run a small server process keeps one pycocoevalcap ``Meteor`` and answers
``compute_score`` requests over a Unix socket (:mod:`multiprocessing.connection`, authenticated with a key made
per run). The socket lives in a directory of its own that only this user can enter (mode 0700 whatever the
umask), and every connection is authenticated in a thread of its own with a deadline: a local process that
connects and says nothing is dropped after :data:`HANDSHAKE_TIMEOUT` seconds and never delays another job, and a
job gives up on a service that does not answer in time and scores with its own JVM. The workflow's ``onstart`` starts it (:func:`start`, which names it to the jobs through the environment),
``onsuccess`` and ``onerror`` stop it (:func:`stop`), and it exits by itself when the Snakemake process that
started it is gone. It starts its JVM at the first request, so a run without score jobs costs nothing.

:func:`meteor_score` is what :func:`brainot.scoring.metrics.coco_scores` calls: the service named by the environment
(:data:`ENV_ADDRESS`, :data:`ENV_KEY`) if it answers, else a JVM of its own. Same jar, same arguments, same
scorer object: the same numbers (``tests/test_meteor_service.py``). Jobs on other machines (a SLURM cluster)
never ask: the workflow starts the service only when it executes jobs locally.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from multiprocessing.connection import Connection, Listener, answer_challenge, deliver_challenge
from pathlib import Path

from brainot.scoring import coco_internals

ENV_ADDRESS = "BRAINOT_METEOR_SERVICE"   # the service's Unix socket
ENV_KEY = "BRAINOT_METEOR_KEY"           # its authentication key, hex
READY = "ready"                          # the server's first line on stdout, once it listens
START_TIMEOUT = 30.0                     # seconds for the server to listen (a Python start, no JVM yet)
REQUEST_TIMEOUT = 600.0                  # seconds for an answer: a JVM start, queued requests, then this one
CONNECT_TIMEOUT = 5.0                    # seconds for the client's connect (a full backlog blocks it)
HANDSHAKE_TIMEOUT = 10.0                 # seconds, each side, for authentication plus moving one message
PREFIX = "brainot-meteor-"               # the socket directory: PREFIX + the starting process's pid + "-" ...
SOCKET = "meteor.sock"                   # the socket's name in it


class ServiceUnavailable(RuntimeError):
    """The service named by the environment did not answer; the caller scores with its own JVM."""


# ---------------------------------------------------------------- scoring

def score_with(scorer, gts: dict, res: dict) -> tuple[float, list[float]]:
    """``scorer.compute_score(gts, res)`` of a pycocoevalcap ``Meteor``, stopping its JVM if that fails.

    compute_score leaves its lock held when the JVM dies mid-answer, and ``Meteor.__del__`` would then wait on
    that lock forever: kill the JVM and free the lock (:func:`brainot.scoring.coco_internals.abandon_meteor`)
    before re-raising.
    """
    try:
        return scorer.compute_score(gts, res)
    except BaseException:
        coco_internals.abandon_meteor(scorer)
        raise


def score_with_own_jvm(gts: dict, res: dict) -> tuple[float, list[float]]:
    """Corpus and per-image METEOR 1.5 of tokenized captions with a JVM started and stopped for this call."""
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        return score_with(scorer, gts, res)
    finally:
        del scorer   # its __del__ stops the JVM now rather than at interpreter exit


@contextmanager
def deadline(conn: Connection, seconds: float, what: str):
    """Shut ``conn``'s socket down if the block takes longer than ``seconds``: a read or write blocked on a
    peer that stopped talking then ends (EOF or EPIPE), and the block raises :class:`TimeoutError`."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    fired = threading.Event()

    def expire():
        fired.set()
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except (OSError, EOFError) as e:
        if fired.is_set():
            raise TimeoutError(f"{what} took more than {seconds:g} s") from e
        raise
    finally:
        timer.cancel()
        sock.close()


def connect(address: str, timeout: float = CONNECT_TIMEOUT) -> Connection:
    """A :class:`multiprocessing.connection.Connection` to the Unix socket ``address``, not yet authenticated;
    the connect itself gives up after ``timeout`` seconds."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.setblocking(True)
        return Connection(sock.detach())
    finally:
        sock.close()


def request(gts: dict, res: dict, address: str, key: bytes) -> tuple[float, list[float]]:
    """Corpus and per-image METEOR from the service at ``address``; :class:`ServiceUnavailable` if it does not
    answer (no socket, refused, wrong key, silent past a deadline, died mid-answer) or reports an error."""
    try:
        with connect(address) as conn:
            with deadline(conn, HANDSHAKE_TIMEOUT, "authenticating and sending the request"):
                answer_challenge(conn, key)
                deliver_challenge(conn, key)
                conn.send((gts, res))
            if not conn.poll(REQUEST_TIMEOUT):
                raise ServiceUnavailable(f"no answer in {REQUEST_TIMEOUT:.0f} s from the METEOR service at {address}")
            with deadline(conn, HANDSHAKE_TIMEOUT, "reading the answer"):
                status, value = conn.recv()
    except ServiceUnavailable:
        raise
    except (OSError, EOFError, ValueError) as e:   # TimeoutError is an OSError; AuthenticationError is below
        raise ServiceUnavailable(f"no answer from the METEOR service at {address}: {e!r}") from e
    except Exception as e:
        raise ServiceUnavailable(f"the METEOR service at {address} refused the request: {e!r}") from e
    if status != "ok":
        raise ServiceUnavailable(f"the METEOR service at {address} failed: {value}")
    return value


def meteor_score(gts: dict, res: dict, log=sys.stderr) -> tuple[float, list[float]]:
    """Corpus and per-image METEOR 1.5 (pycocoevalcap) of tokenized ``res`` against ``gts``: through the
    service named by the environment when there is one and it answers, else with a JVM of this process."""
    address, key = os.environ.get(ENV_ADDRESS), os.environ.get(ENV_KEY)
    if address and key:
        try:
            value = request(gts, res, address, bytes.fromhex(key))
            print(f"METEOR: scored by the run's shared JVM ({address})", file=log)
            return value
        except ServiceUnavailable as e:
            print(f"METEOR: {e}; starting a JVM of this job's own", file=log)
    return score_with_own_jvm(gts, res)


# ---------------------------------------------------------------- the server

class MeteorServer:
    """One pycocoevalcap ``Meteor``, started at the first request; requests are served one at a time."""

    def __init__(self, log):
        self.scorer = None
        self.lock = threading.Lock()
        self.log = log

    def score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        from pycocoevalcap.meteor.meteor import Meteor

        with self.lock:
            if self.scorer is None:
                self.scorer = Meteor()
                print(f"started a METEOR JVM (pid {coco_internals.meteor_pid(self.scorer)})", file=self.log,
                      flush=True)
            try:
                return score_with(self.scorer, gts, res)
            except BaseException:
                self.scorer = None   # score_with killed it; the next request starts a fresh one
                raise

    def handle(self, conn: Connection, key: bytes, handshake_timeout: float) -> None:
        """Authenticate one connection and answer its request; a client that does not authenticate and send
        its request within ``handshake_timeout`` seconds is dropped. Runs in a thread of its own."""
        with conn:
            try:
                with deadline(conn, handshake_timeout, "authenticating and reading the request"):
                    deliver_challenge(conn, key)
                    answer_challenge(conn, key)
                    gts, res = conn.recv()
            except Exception as e:   # wrong key, hung up, or silent past the deadline
                print(f"refused a connection: {e!r}", file=self.log, flush=True)
                return
            try:
                t0 = time.perf_counter()
                reply = ("ok", self.score(gts, res))
                print(f"scored {len(res)} captions in {time.perf_counter() - t0:.2f} s (a JVM start included "
                      "if it was the first)", file=self.log, flush=True)
            except Exception as e:
                reply = ("error", repr(e))
                print(f"request failed: {e!r}", file=self.log, flush=True)
            try:
                conn.send(reply)
            except OSError:
                pass   # the client went away; nothing to tell it

    def close(self) -> None:
        if self.scorer is not None:
            coco_internals.stop_meteor(self.scorer)
            print("stopped the METEOR JVM", file=self.log, flush=True)


def serve(address: str, key: bytes, parent: int, handshake_timeout: float = HANDSHAKE_TIMEOUT,
          log=sys.stderr) -> None:
    """Answer METEOR requests at ``address`` until SIGTERM or SIGINT, or until process ``parent`` is gone.

    The accept loop only accepts: each connection is authenticated and served in a thread of its own
    (:meth:`MeteorServer.handle`), so one client cannot hold up another. The socket is made owner-only (its
    directory, from :func:`start`, already is); on exit the socket and its directory are removed.
    """
    server = MeteorServer(log)
    listener = Listener(address, family="AF_UNIX", backlog=64)   # no authkey: handle() authenticates
    os.chmod(address, 0o600)

    def shut_down(*_):
        server.close()
        listener.close()   # removes the socket file
        try:
            os.rmdir(os.path.dirname(address))
        except OSError:
            pass   # not the empty directory start() made
        print("METEOR service stopped", file=log, flush=True)
        os._exit(0)   # the accept loop and any request threads end with the process

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(1.0)
        print(f"process {parent} that started the service is gone", file=log, flush=True)
        shut_down()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    threading.Thread(target=watch_parent, daemon=True).start()
    print(f"METEOR service listening at {address}", file=log, flush=True)
    print(READY, flush=True)
    while True:
        try:
            conn = listener.accept()
        except OSError as e:
            print(f"accept failed: {e!r}", file=log, flush=True)
            continue
        threading.Thread(target=server.handle, args=(conn, key, handshake_timeout), daemon=True).start()


# ---------------------------------------------------------------- lifecycle, from the workflow

class Service:
    """A running server: its process, log file and socket directory (see :func:`start`)."""

    def __init__(self, process: subprocess.Popen, log_file, folder: str):
        self.process, self.log_file, self.folder = process, log_file, folder


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(root: str | Path) -> list[Path]:
    """Remove this user's socket directories under ``root`` whose starting process is gone (a service that
    was killed before it could clean up: it exits within a second of that process), and sockets directly in
    ``root`` that nothing listens at. Returns what was removed."""
    removed = []
    for path in Path(root).glob(PREFIX + "*.sock"):   # the sockets of earlier versions, directly in root
        try:
            if not (stat.S_ISSOCK(path.lstat().st_mode) and path.lstat().st_uid == os.getuid()):
                continue
            with connect(str(path), timeout=1.0):
                pass   # a live service
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
            removed.append(path)
        except OSError:
            pass
    for path in Path(root).glob(PREFIX + "*-*"):
        try:
            info = path.lstat()
            pid = int(path.name[len(PREFIX):].split("-", 1)[0])
        except (OSError, ValueError):
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def start(log_path: str | Path, root: str | Path | None = None,
          handshake_timeout: float = HANDSHAKE_TIMEOUT) -> Service:
    """Start the server as a child of this process and name it to the jobs this process starts (through
    ``os.environ``: :data:`ENV_ADDRESS`, :data:`ENV_KEY`). Its log goes to ``log_path``.

    The socket is ``meteor.sock`` in a new directory under ``root`` (default: the system's temporary
    directory; a short path, as Unix sockets allow about 100 bytes) named after this process, mode 0700 set
    explicitly so that no umask loosens it: only this user can reach the socket. Stale directories of dead
    services are removed first (:func:`remove_stale`). The server removes its own when it stops.
    """
    root = Path(root if root is not None else tempfile.gettempdir())
    remove_stale(root)
    folder = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=root)
    os.chmod(folder, 0o700)
    address = os.path.join(folder, SOCKET)
    key = secrets.token_hex(32)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "a")
    env = dict(os.environ, **{ENV_KEY: key})
    env.pop(ENV_ADDRESS, None)
    process = subprocess.Popen([sys.executable, "-m", "brainot.scoring.meteor_service", "--address", address,
                                "--parent", str(os.getpid()), "--handshake-timeout", str(handshake_timeout)],
                               stdout=subprocess.PIPE, stderr=log_file, env=env, text=True)
    ready = threading.Event()

    def wait_ready():   # a thread, so that a server that hangs before listening cannot hang the workflow
        if process.stdout.readline().strip() == READY:
            ready.set()

    threading.Thread(target=wait_ready, daemon=True).start()
    if not ready.wait(START_TIMEOUT):
        process.kill()
        process.wait()
        log_file.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise RuntimeError(f"the METEOR service did not start within {START_TIMEOUT:.0f} s; see {log_path}")
    os.environ[ENV_ADDRESS], os.environ[ENV_KEY] = address, key
    return Service(process, log_file, folder)


def stop(service: Service | None) -> None:
    """Stop the server and its JVM, and stop naming it to new jobs."""
    if service is None:
        return
    for name in (ENV_ADDRESS, ENV_KEY):
        os.environ.pop(name, None)
    if service.process.poll() is None:
        service.process.terminate()
        try:
            service.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()
    shutil.rmtree(service.folder, ignore_errors=True)   # a server that was killed leaves its socket
    service.log_file.close()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m brainot.scoring.meteor_service",
        description="Serve METEOR 1.5 (pycocoevalcap's Meteor, one JVM) over a Unix socket to the score jobs of "
                    "one Snakemake run. Started and stopped by the workflow (brainot.scoring.meteor_service.start/stop); "
                    f"the authentication key comes in ${ENV_KEY}.")
    p.add_argument("--address", required=True, help="the Unix socket to listen at")
    p.add_argument("--parent", type=int, required=True, help="exit when this process (Snakemake) is gone")
    p.add_argument("--handshake-timeout", type=float, default=HANDSHAKE_TIMEOUT,
                   help=f"seconds a client has to authenticate and send its request (default {HANDSHAKE_TIMEOUT:g})")
    args = p.parse_args(argv)
    key = os.environ.get(ENV_KEY)
    if not key:
        p.error(f"${ENV_KEY} is not set")
    serve(args.address, bytes.fromhex(key), args.parent, args.handshake_timeout)


if __name__ == "__main__":
    main()
