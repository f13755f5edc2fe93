"""brainot.meteor_service: the one METEOR JVM a run's score jobs share gives pycocoevalcap's numbers, a job
that cannot reach it scores with its own, and the service never outlives the run that started it.

Three METEOR JVMs start here (the oracle, the service, one job's own): about 40 CPU-seconds, hence slow.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from brainot import meteor_service as MS
from brainot.config import REPO

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
from brainot.meteor_service import meteor_score
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


@pytest.mark.slow
def test_a_job_that_cannot_reach_the_service_scores_with_its_own_jvm(oracle, clean_environment, tmp_path):
    os.environ[MS.ENV_ADDRESS] = str(tmp_path / "gone.sock")   # a service that has stopped
    os.environ[MS.ENV_KEY] = "00" * 32
    messages = io.StringIO()
    assert MS.meteor_score(*CASES["horses"], log=messages) == oracle["horses"]
    assert "no answer from the METEOR service" in messages.getvalue()
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
        [sys.executable, "-c", "import os, sys, time\nfrom brainot import meteor_service as MS\n"
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
