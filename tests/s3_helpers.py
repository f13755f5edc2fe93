"""A real S3 endpoint for the fetch tests: a moto server on 127.0.0.1, and a TCP proxy in front of it that
records every HTTP request and can break or corrupt one response.

The proxy forwards raw bytes (boto3 speaks to it as to any S3 endpoint); it only reads the request heads
going out, to log them and to decide which response to damage. Requests to moto carry no body here (GET,
HEAD, list), which is what makes reading them as a sequence of heads safe.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest

REGION = "us-east-2"


class MotoS3:
    """A moto S3 server on a free loopback port, with an admin (signed) client to fill buckets."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.host, self.port = host, port
        self.endpoint = f"http://{host}:{port}"
        self.admin = boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                                  aws_access_key_id="test", aws_secret_access_key="test")

    def stop(self) -> None:
        self.server.stop()

    def public_bucket(self, name: str) -> str:
        """A bucket anyone may read, as the NSD bucket is (moto checks HEAD as its own action)."""
        self.admin.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*",
            "Action": ["s3:GetObject", "s3:HeadObject", "s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]}]}
        self.admin.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
        return name

    def upload_tree(self, bucket: str, root: Path, prefix: str = "") -> list[str]:
        """Every file under ``root`` as ``prefix + relative path`` (single-part uploads). Returns the keys."""
        keys = []
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            key = prefix + path.relative_to(root).as_posix()
            self.admin.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            keys.append(key)
        return keys

    def put_multipart(self, bucket: str, key: str, parts: list[bytes]) -> str:
        """Upload ``key`` in parts (S3's minimum part size, 5 MiB, applies to all but the last). Returns the ETag."""
        upload = self.admin.create_multipart_upload(Bucket=bucket, Key=key)
        done = []
        for number, body in enumerate(parts, 1):
            r = self.admin.upload_part(Bucket=bucket, Key=key, PartNumber=number, UploadId=upload["UploadId"], Body=body)
            done.append({"PartNumber": number, "ETag": r["ETag"]})
        r = self.admin.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                                 MultipartUpload={"Parts": done})
        return r["ETag"].strip('"')


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]

    @property
    def is_object_get(self) -> bool:
        """A GET of an object's bytes (not a bucket listing)."""
        return self.method == "GET" and "list-type=" not in self.path


@dataclass
class _Fault:
    path_part: str
    kind: str  # "cut": close the connection after `at` body bytes; "flip": invert body byte `at`
    at: int
    fired: bool = False


@dataclass
class _Conn:
    client: socket.socket
    upstream: socket.socket
    fault: _Fault | None = None
    head_done: bool = False
    head_buf: bytes = b""
    body_seen: int = 0
    closed: threading.Event = field(default_factory=threading.Event)


class FaultProxy:
    """Loopback TCP proxy to ``upstream``; :attr:`requests` logs every request head that went through.

    :meth:`cut` makes the next GET whose path contains a string end after a number of body bytes (the server
    seems to hang up mid-object); :meth:`flip` corrupts one body byte of the next such GET.
    """

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.requests: list[Request] = []
        self.faults: list[_Fault] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, path_part: str, after_bytes: int) -> _Fault:
        fault = _Fault(path_part, "cut", after_bytes)
        self.faults.append(fault)
        return fault

    def flip(self, path_part: str, at_byte: int) -> _Fault:
        fault = _Fault(path_part, "flip", at_byte)
        self.faults.append(fault)
        return fault

    def object_gets(self, path_part: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.is_object_get and path_part in r.path]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.faults.clear()

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            conn = _Conn(client, upstream)
            threading.Thread(target=self._requests, args=(conn,), daemon=True).start()
            threading.Thread(target=self._responses, args=(conn,), daemon=True).start()

    def _close(self, conn: _Conn) -> None:
        conn.closed.set()
        for sock in (conn.client, conn.upstream):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _requests(self, conn: _Conn) -> None:
        buf = b""
        try:
            while data := conn.client.recv(65536):
                buf += data
                while b"\r\n\r\n" in buf:
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    self._log(conn, head)
                conn.upstream.sendall(data)
        except OSError:
            pass
        self._close(conn)

    def _log(self, conn: _Conn, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        request = Request(method, path, headers)
        with self.lock:
            self.requests.append(request)
            for fault in self.faults:
                if not fault.fired and request.is_object_get and fault.path_part in path:
                    fault.fired = True
                    # The response to this request is the next one on this connection (no pipelining).
                    conn.fault, conn.head_done, conn.head_buf, conn.body_seen = fault, False, b"", 0
                    break

    def _responses(self, conn: _Conn) -> None:
        try:
            while data := conn.upstream.recv(65536):
                fault = conn.fault
                if fault is not None:
                    data, stop = self._damage(conn, fault, data)
                    conn.client.sendall(data)
                    if stop:
                        break
                else:
                    conn.client.sendall(data)
        except OSError:
            pass
        self._close(conn)

    @staticmethod
    def _damage(conn: _Conn, fault: _Fault, data: bytes) -> tuple[bytes, bool]:
        """Apply ``fault`` to a chunk of the response; returns what to send and whether to hang up after."""
        prefix = b""
        if not conn.head_done:
            conn.head_buf += data
            if b"\r\n\r\n" not in conn.head_buf:
                return b"", False
            head, data = conn.head_buf.split(b"\r\n\r\n", 1)
            prefix, conn.head_done = head + b"\r\n\r\n", True
        start = conn.body_seen
        conn.body_seen += len(data)
        if fault.kind == "cut" and conn.body_seen >= fault.at:
            return prefix + data[:fault.at - start], True
        if fault.kind == "flip" and start <= fault.at < conn.body_seen:
            i = fault.at - start
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
            conn.fault = None
        return prefix + data, False


@pytest.fixture(scope="session")
def moto_s3():
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def proxy(moto_s3):
    """A fresh proxy in front of the session's moto server."""
    p = FaultProxy(moto_s3.host, moto_s3.port)
    yield p
    p.stop()
