"""One METEOR JVM for every score job of a local Snakemake run.

pycocoevalcap's ``Meteor()`` starts ``java -jar meteor-1.5.jar - - -stdio -l en -norm``, and the JVM loads
METEOR's 62 MB paraphrase table before it scores anything: 10 s and 13 CPU-seconds per start on the 2-core demo
machine, against well under a second to score 150 captions. A score job per run (each a cell of the tables)
would start one JVM each: 14 in the demo, about a sixth of its CPU time.

So for the length of a local Snakemake run a small server process keeps one pycocoevalcap ``Meteor`` and answers
``compute_score`` requests over a Unix socket (:mod:`multiprocessing.connection`, authenticated with a key made
per run). The workflow's ``onstart`` starts it (:func:`start`, which names it to the jobs through the environment),
``onsuccess`` and ``onerror`` stop it (:func:`stop`), and it exits by itself when the Snakemake process that
started it is gone. It starts its JVM at the first request, so a run without score jobs costs nothing.

:func:`meteor_score` is what :func:`brainot.metrics.coco_scores` calls: the service named by the environment
(:data:`ENV_ADDRESS`, :data:`ENV_KEY`) if it answers, else a JVM of its own. Same jar, same arguments, same
scorer object: the same numbers (``tests/test_meteor_service.py``). Jobs on other machines (a SLURM cluster)
never ask: the workflow starts the service only when it executes jobs locally.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Client, Listener
from pathlib import Path

ENV_ADDRESS = "BRAINOT_METEOR_SERVICE"   # the service's Unix socket
ENV_KEY = "BRAINOT_METEOR_KEY"           # its authentication key, hex
READY = "ready"                          # the server's first line on stdout, once it listens
START_TIMEOUT = 30.0                     # seconds for the server to listen (a Python start, no JVM yet)
REQUEST_TIMEOUT = 600.0                  # seconds for an answer: a JVM start, queued requests, then this one


class ServiceUnavailable(RuntimeError):
    """The service named by the environment did not answer; the caller scores with its own JVM."""


# ---------------------------------------------------------------- scoring

def score_with(scorer, gts: dict, res: dict) -> tuple[float, list[float]]:
    """``scorer.compute_score(gts, res)`` of a pycocoevalcap ``Meteor``, stopping its JVM if that fails.

    compute_score leaves its lock held when the JVM dies mid-answer, and ``Meteor.__del__`` would then wait on
    that lock forever: kill the JVM and free the lock before re-raising.
    """
    try:
        return scorer.compute_score(gts, res)
    except BaseException:
        scorer.meteor_p.kill()
        if scorer.lock.locked():
            scorer.lock.release()
        raise


def score_with_own_jvm(gts: dict, res: dict) -> tuple[float, list[float]]:
    """Corpus and per-image METEOR 1.5 of tokenized captions with a JVM started and stopped for this call."""
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        return score_with(scorer, gts, res)
    finally:
        del scorer   # its __del__ stops the JVM now rather than at interpreter exit


def request(gts: dict, res: dict, address: str, key: bytes) -> tuple[float, list[float]]:
    """Corpus and per-image METEOR from the service at ``address``; :class:`ServiceUnavailable` if it does not
    answer (no socket, refused, wrong key, died mid-answer) or reports an error."""
    try:
        with Client(address, family="AF_UNIX", authkey=key) as conn:
            conn.send((gts, res))
            if not conn.poll(REQUEST_TIMEOUT):
                raise ServiceUnavailable(f"no answer in {REQUEST_TIMEOUT:.0f} s from the METEOR service at {address}")
            status, value = conn.recv()
    except ServiceUnavailable:
        raise
    except (OSError, EOFError, ValueError) as e:   # AuthenticationError is a ProcessError, handled below
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
                print(f"started a METEOR JVM (pid {self.scorer.meteor_p.pid})", file=self.log, flush=True)
            try:
                return score_with(self.scorer, gts, res)
            except BaseException:
                self.scorer = None   # score_with killed it; the next request starts a fresh one
                raise

    def handle(self, conn) -> None:
        with conn:
            try:
                gts, res = conn.recv()
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
            self.scorer.meteor_p.kill()
            self.scorer.meteor_p.wait()
            print("stopped the METEOR JVM", file=self.log, flush=True)


def serve(address: str, key: bytes, parent: int, log=sys.stderr) -> None:
    """Answer METEOR requests at ``address`` until SIGTERM or SIGINT, or until process ``parent`` is gone."""
    server = MeteorServer(log)
    listener = Listener(address, family="AF_UNIX", authkey=key)

    def shut_down(*_):
        server.close()
        listener.close()   # removes the socket file
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
        except Exception as e:   # a client that failed authentication, or hung up during the handshake
            print(f"refused a connection: {e!r}", file=log, flush=True)
            continue
        threading.Thread(target=server.handle, args=(conn,), daemon=True).start()


# ---------------------------------------------------------------- lifecycle, from the workflow

class Service:
    """A running server: its process and log file (see :func:`start`)."""

    def __init__(self, process: subprocess.Popen, log_file):
        self.process, self.log_file = process, log_file


def start(log_path: str | Path) -> Service:
    """Start the server as a child of this process and name it to the jobs this process starts (through
    ``os.environ``: :data:`ENV_ADDRESS`, :data:`ENV_KEY`). Its log goes to ``log_path``.

    The socket is a random name in the system's temporary directory: a short path (Unix sockets allow about
    100 bytes) that no other run shares. The server removes it when it stops.
    """
    address = os.path.join(tempfile.gettempdir(), f"brainot-meteor-{secrets.token_hex(8)}.sock")
    key = secrets.token_hex(32)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "a")
    env = dict(os.environ, **{ENV_KEY: key})
    env.pop(ENV_ADDRESS, None)
    process = subprocess.Popen([sys.executable, "-m", "brainot.meteor_service", "--address", address,
                                "--parent", str(os.getpid())],
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
        raise RuntimeError(f"the METEOR service did not start within {START_TIMEOUT:.0f} s; see {log_path}")
    os.environ[ENV_ADDRESS], os.environ[ENV_KEY] = address, key
    return Service(process, log_file)


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
    service.log_file.close()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m brainot.meteor_service",
        description="Serve METEOR 1.5 (pycocoevalcap's Meteor, one JVM) over a Unix socket to the score jobs of "
                    "one Snakemake run. Started and stopped by the workflow (brainot.meteor_service.start/stop); "
                    f"the authentication key comes in ${ENV_KEY}.")
    p.add_argument("--address", required=True, help="the Unix socket to listen at")
    p.add_argument("--parent", type=int, required=True, help="exit when this process (Snakemake) is gone")
    args = p.parse_args(argv)
    key = os.environ.get(ENV_KEY)
    if not key:
        p.error(f"${ENV_KEY} is not set")
    serve(args.address, bytes.fromhex(key), args.parent)


if __name__ == "__main__":
    main()
