"""Probe the METEOR service (brainot.scoring.meteor_service) as a hostile local user would.

Starts the service under umask 000, connects a client that never says anything, then makes a request with a
wrong key (refused at once by a service that gets to the handshake; no JVM is started) and reports the socket's
and its directory's modes and whether the request was answered within 30 s. The code probed is whichever
``brainot`` is first on PYTHONPATH, e.g.::

    PYTHONPATH=src python scripts/probe_meteor_service.py
"""

import os
import socket
import stat
import tempfile
import threading
import time

from brainot.scoring import meteor_service as MS

old = os.umask(0)
try:
    service = MS.start(os.path.join(tempfile.mkdtemp(), "service.log"))
finally:
    os.umask(old)
address = os.environ[MS.ENV_ADDRESS]
folder = os.path.dirname(address)
print(f"socket {address}: mode {oct(stat.S_IMODE(os.stat(address).st_mode))}; "
      f"its directory: mode {oct(stat.S_IMODE(os.stat(folder).st_mode))}")
silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
silent.connect(address)
result = {}


def ask():
    t0 = time.monotonic()
    try:
        MS.request({0: ["a"]}, {0: ["a"]}, address, b"not the key")
    except Exception as e:
        result["error"] = repr(e)
    result["seconds"] = time.monotonic() - t0


thread = threading.Thread(target=ask, daemon=True)
thread.start()
thread.join(30)
print(f"request with a silent client connected: answered in {result['seconds']:.3f} s ({result.get('error')})"
      if "seconds" in result else "request with a silent client connected: still waiting after 30 s")
silent.close()
MS.stop(service)
