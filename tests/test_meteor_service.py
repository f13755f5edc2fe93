"""brainot.scoring.meteor_service: the one METEOR JVM a run's score jobs share gives pycocoevalcap's numbers, a job
that cannot reach it scores with its own, and the service never outlives the run that started it.

Three METEOR JVMs start here (the oracle, the service, one job's own): about 40 CPU-seconds, hence slow.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from brainot.config import REPO
from brainot.scoring import meteor_service as MS

# Tokenized captions (what PTBTokenizer gives coco_scores): lower case, no punctuation.
CASES = {
    "horses": ({0: ["a man rides a brown horse", "a person on a horse in a field"],
                1: ["two dogs playing in snow", "dogs run through the snow"]},
               {0: ["a man riding a brown horse"], 1: ["two dogs play in the snow"]}),
    "kitchen": ({0: ["a kitchen with a sink and a counter", "the kitchen counter is clean"],
                 1: ["a cat sitting on a couch", "a grey cat on a sofa"],
                 2: ["a red bus on a street", "a bus parked in a city"]},
                {0: ["the kitchens counter has a sink"], 1: ["a cat a cat sitting on a sofa"],
                 2: ["a red bus parked on a city street"]}),
}

# A job of its own: a separate process that finds the service through the environment, as score jobs do.
JOB = """
import json, sys
from brainot.scoring.meteor_service import meteor_score
gts, res = json.load(sys.stdin)
print(json.dumps(meteor_score({int(k): v for k, v in gts.items()}, {int(k): v for k, v in res.items()})))
"""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(condition, timeout: float = 15.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.fixture(scope="module")
def oracle():
    """pycocoevalcap's Meteor called directly: case -> (corpus score, per-image scores)."""
    from pycocoevalcap.meteor.meteor import Meteor

    meteor = Meteor()
    expected = {case: meteor.compute_score(gts, res) for case, (gts, res) in CASES.items()}
    del meteor
    return expected


@pytest.fixture
def clean_environment():
    """The service names itself in os.environ: leave this process's environment as the test found it."""
    before = {k: os.environ.get(k) for k in (MS.ENV_ADDRESS, MS.ENV_KEY)}
    yield
    for k, v in before.items():
        os.environ.pop(k, None)
        if v is not None:
            os.environ[k] = v


@pytest.mark.slow
def test_concurrent_jobs_share_one_jvm_and_get_pycocoevalcap_scores(oracle, clean_environment, tmp_path):
    log = tmp_path / "service.log"
    service = MS.start(log)
    address = os.environ[MS.ENV_ADDRESS]
    gts, res = CASES["horses"]
    job = subprocess.Popen([sys.executable, "-c", JOB], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    in_process, messages = {}, io.StringIO()
    thread = threading.Thread(target=lambda: in_process.update(
        value=MS.meteor_score(*CASES["kitchen"], log=messages)))
    thread.start()   # both ask while the service's JVM is still starting
    out, err = job.communicate(json.dumps([gts, res]))
    thread.join()
    assert job.returncode == 0, err
    score, scores = json.loads(out)
    assert (score, scores) == oracle["horses"] and len(scores) == 2
    assert in_process["value"] == oracle["kitchen"]
    assert "scored by the run's shared JVM" in err and "scored by the run's shared JVM" in messages.getvalue()

    text = log.read_text()
    assert text.count("started a METEOR JVM") == 1, text
    jvm = int(text.split("started a METEOR JVM (pid ")[1].split(")")[0])
    MS.stop(service)
    assert service.process.poll() is not None and wait_until(lambda: not pid_alive(jvm))
    assert not os.path.exists(address)
    assert MS.ENV_ADDRESS not in os.environ and MS.ENV_KEY not in os.environ


@pytest.fixture
def short_root():
    """A directory with a short path for socket directories (a Unix socket path has about 100 bytes)."""
    root = tempfile.mkdtemp(prefix="bo-", dir="/tmp")
    yield Path(root)
    shutil.rmtree(root, ignore_errors=True)


def silent_listener(path: Path) -> socket.socket:
    """A Unix socket that accepts connections (in its backlog) and never says anything."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(8)
    return sock


@pytest.mark.slow
def test_a_job_whose_service_is_silent_scores_with_its_own_jvm(oracle, clean_environment, short_root, monkeypatch):
    monkeypatch.setattr(MS, "HANDSHAKE_TIMEOUT", 1.0)
    listener = silent_listener(short_root / "silent.sock")   # a process that never sends the challenge
    os.environ[MS.ENV_ADDRESS] = str(short_root / "silent.sock")
    os.environ[MS.ENV_KEY] = "00" * 32
    messages = io.StringIO()
    try:
        assert MS.meteor_score(*CASES["horses"], log=messages) == oracle["horses"]
    finally:
        listener.close()
    assert "authenticating and sending the request took more than 1 s" in messages.getvalue()
    assert "starting a JVM of this job's own" in messages.getvalue()


def test_the_service_answers_only_its_own_key(clean_environment, tmp_path):
    service = MS.start(tmp_path / "service.log")   # no JVM: it starts at the first scoring request
    address = os.environ[MS.ENV_ADDRESS]
    try:
        with pytest.raises(MS.ServiceUnavailable, match="refused"):
            MS.request(*CASES["horses"], address, b"not the key")
    finally:
        MS.stop(service)
    with pytest.raises(MS.ServiceUnavailable, match="no answer"):
        MS.request(*CASES["horses"], address, bytes.fromhex("00" * 32))
    assert "started a METEOR JVM" not in (tmp_path / "service.log").read_text()


def test_the_service_exits_when_the_process_that_started_it_is_killed(tmp_path):
    starter = subprocess.Popen(
        [sys.executable, "-c", "import os, sys, time\nfrom brainot.scoring import meteor_service as MS\n"
         f"s = MS.start({str(tmp_path / 'service.log')!r})\n"
         "print(s.process.pid, os.environ[MS.ENV_ADDRESS], flush=True)\ntime.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
    pid, address = starter.stdout.readline().split()
    assert pid_alive(int(pid)) and os.path.exists(address)
    starter.send_signal(signal.SIGKILL)   # as when Snakemake is killed: no onsuccess or onerror
    starter.wait()
    assert wait_until(lambda: not pid_alive(int(pid)) or _reaped(int(pid)))
    assert not os.path.exists(address)
    assert "is gone" in (tmp_path / "service.log").read_text()


def _reaped(pid: int) -> bool:
    """True when ``pid`` is a zombie: the orphaned server has exited and waits for init to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def still_connected(sock: socket.socket) -> bool:
    """True when the peer has not closed ``sock`` (whatever it sent is read and dropped)."""
    sock.setblocking(False)
    try:
        while True:
            if sock.recv(4096) == b"":
                return False
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


@pytest.mark.slow
def test_a_silent_client_does_not_delay_a_real_request(oracle, clean_environment, short_root, tmp_path):
    # the deadline is far longer than the request takes: the silent client is still connected at the end
    service = MS.start(tmp_path / "service.log", root=short_root, handshake_timeout=600)
    address, key = os.environ[MS.ENV_ADDRESS], bytes.fromhex(os.environ[MS.ENV_KEY])
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        silent.connect(address)   # and says nothing
        assert MS.request(*CASES["horses"], address, key) == oracle["horses"]
        assert still_connected(silent)
    finally:
        silent.close()
        MS.stop(service)


def test_a_silent_client_is_dropped_at_the_handshake_deadline(clean_environment, short_root, tmp_path):
    service = MS.start(tmp_path / "service.log", root=short_root, handshake_timeout=1)
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        silent.connect(os.environ[MS.ENV_ADDRESS])
        silent.settimeout(120)   # generous: the server closes it about 1 s after the connect
        while silent.recv(4096):
            pass   # the challenge, then EOF
        # The EOF comes from the deadline's shutdown; the handler logs just after it, in the service's thread:
        # wait for that line (generously) before stopping the service, which would end the thread.
        expected = "authenticating and reading the request took more than 1 s"
        give_up = time.monotonic() + 60
        while expected not in (tmp_path / "service.log").read_text() and time.monotonic() < give_up:
            time.sleep(0.05)
    finally:
        silent.close()
        MS.stop(service)
    assert expected in (tmp_path / "service.log").read_text()


def test_a_client_gives_up_on_a_service_that_never_answers(short_root, monkeypatch):
    monkeypatch.setattr(MS, "HANDSHAKE_TIMEOUT", 1.0)
    listener = silent_listener(short_root / "silent.sock")
    try:
        with pytest.raises(MS.ServiceUnavailable, match="took more than 1 s"):
            MS.request(*CASES["horses"], str(short_root / "silent.sock"), b"key")
    finally:
        listener.close()


def test_the_socket_is_private_whatever_the_umask(clean_environment, short_root, tmp_path):
    old = os.umask(0)
    try:
        service = MS.start(tmp_path / "service.log", root=short_root)
    finally:
        os.umask(old)
    address = os.environ[MS.ENV_ADDRESS]
    try:
        folder = os.path.dirname(address)
        assert os.path.dirname(folder) == str(short_root)
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        mode = os.stat(address).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) & 0o077 == 0
    finally:
        MS.stop(service)
    assert not os.path.exists(folder)


def test_stale_sockets_of_dead_services_are_removed(clean_environment, short_root, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()   # a pid that no process has now
    stale = short_root / f"{MS.PREFIX}{dead.pid}-abc"
    stale.mkdir(mode=0o700)
    old_style = short_root / f"{MS.PREFIX}0123456789abcdef.sock"
    for path in (stale / MS.SOCKET, old_style):   # sockets whose server was killed: nothing listens
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        sock.close()
    alive = short_root / f"{MS.PREFIX}{os.getpid()}-xyz"   # a run that is still going
    alive.mkdir(mode=0o700)
    service = MS.start(tmp_path / "service.log", root=short_root)
    try:
        assert not stale.exists() and not old_style.exists() and alive.is_dir()
        assert os.path.exists(os.environ[MS.ENV_ADDRESS])
    finally:
        MS.stop(service)
