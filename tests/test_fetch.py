"""The verified NSD fetch against the real S3 protocol (a moto server behind a fault-injecting proxy) and
against a local directory: byte-identical files, reruns that download nothing, corruption detected,
interrupted downloads resumed with ranged GETs, multipart ETags verified by size, clear errors."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from s3_helpers import moto_s3, proxy  # noqa: F401  (pytest fixtures)

from brainot.data import layout
from brainot.data.fetch import FetchError, MissingKeyError, fetch, read_records
from brainot.data.fetch.checksum import part_size_candidates
from brainot.data.fetch.transfer import OVERLAP

BUCKET = "nsd-sim"


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def source_tree(simulated_nsd) -> Path:
    """The simulated mini-NSD (conftest): a directory in the bucket layout with every key the tiny config needs."""
    return simulated_nsd


def wanted_keys(nsd: dict) -> list[str]:
    """Every local key of group ``all`` for this config (what the source must hold), from brainot.data.layout alone."""
    keys = list(layout.shared_keys()) + [f"{layout.CAPTIONS_DIR}/{k}" for k in layout.caption_keys()]
    for subject in nsd["subjects"]:
        keys += layout.subject_keys(nsd, subject)
    return keys


@pytest.fixture(scope="session")
def bucket(moto_s3, source_tree) -> str:  # noqa: F811
    """A public moto bucket holding the source tree (single-part uploads)."""
    moto_s3.public_bucket(BUCKET)
    moto_s3.upload_tree(BUCKET, source_tree)
    return BUCKET


def nsd_section(cfg: dict, source: str, dest: Path, endpoint: str | None = None, **extra) -> dict:
    nsd = copy.deepcopy(cfg["nsd"])
    nsd.update(source=source, dir=str(dest), endpoint_url=endpoint, **extra)
    return nsd


def quick(nsd, group="all", **kw):
    """A fetch with test-sized retry delays and no progress bar."""
    kw.setdefault("backoff", 0.01)
    return fetch(nsd, None, group, progress=False, **kw)


def assert_identical(dest: Path, source: Path, keys: list[str]) -> None:
    for key in keys:
        assert (dest / key).read_bytes() == (source / key).read_bytes(), key


# --- S3 -------------------------------------------------------------------------------------------------------

def test_full_fetch_from_s3_is_byte_identical_and_manifested(sim_cfg, bucket, source_tree, proxy, tmp_path):  # noqa: F811
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"s3://{bucket}", dest, proxy.endpoint)
    keys = wanted_keys(nsd)

    stats = quick(nsd)

    assert stats.actions["fetch"] == len(keys) == stats.keys
    assert stats.received == sum((source_tree / k).stat().st_size for k in keys)
    assert_identical(dest, source_tree, keys)
    assert len(proxy.object_gets()) == len(keys)  # one GET per key, no retries
    for group in ["shared", *(layout.subj(s) for s in nsd["subjects"])]:
        rows = read_records(dest / "manifest" / f"{group}.tsv")
        assert rows, group
        for key, rec in rows.items():
            assert rec.size == (source_tree / key).stat().st_size
            assert rec.md5 == md5(source_tree / key)
            # single-part: ETag == MD5, and the CRC32 that boto3 had S3 store at upload, both checked
            assert rec.verified == "md5+crc32"
            assert rec.source == f"s3://{bucket}/{key}"
    assert set().union(*(read_records(dest / "manifest" / f"{g}.tsv") for g in stats.groups)) == set(keys)


def test_rerun_downloads_nothing_and_restores_what_snakemake_deleted(sim_cfg, bucket, source_tree, proxy, tmp_path):  # noqa: F811
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"s3://{bucket}", dest, proxy.endpoint)
    quick(nsd, "subj01")
    proxy.reset()

    again = quick(nsd, "subj01")
    assert again.actions["present"] == again.keys and again.actions["fetch"] == 0
    assert proxy.object_gets() == []

    # Snakemake removes a rule's outputs (the files and the manifest) before rerunning it.
    gone = layout.subject_keys(nsd, 1)[:3]
    for key in gone:
        (dest / key).unlink()
    (dest / "manifest" / "subj01.tsv").unlink()
    restored = quick(nsd, "subj01")
    assert restored.actions["restore"] == 3 and restored.actions["fetch"] == 0
    assert proxy.object_gets() == []
    assert_identical(dest, source_tree, layout.subject_keys(nsd, 1))
    assert set(read_records(dest / "manifest" / "subj01.tsv")) == set(layout.subject_keys(nsd, 1))


def test_corrupted_file_is_fetched_again(sim_cfg, bucket, source_tree, proxy, tmp_path):  # noqa: F811
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"s3://{bucket}", dest, proxy.endpoint)
    quick(nsd, "subj02")
    truncated, flipped = layout.roi(2, "nsdgeneral"), layout.betas(2, 1)
    proxy.reset()

    with open(dest / truncated, "r+b") as fh:  # in place: the kept hard link is damaged too
        fh.truncate(10)
    stats = quick(nsd, "subj02")
    assert stats.actions["fetch"] == 1
    assert [r.path.split("?")[0] for r in proxy.object_gets()] == [f"/{bucket}/{truncated}"]
    assert_identical(dest, source_tree, [truncated])

    with open(dest / flipped, "r+b") as fh:  # same size, one byte changed
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 0xFF]))
    assert quick(nsd, "subj02", dry_run=True).actions["fetch"] == 0  # the cheap check only compares sizes
    full = quick(nsd, "subj02", verify="full")
    assert full.actions["fetch"] == 1 and full.actions["present"] == full.keys - 1
    assert_identical(dest, source_tree, [flipped])


def test_connection_cut_mid_object_resumes_with_ranged_get(sim_cfg, bucket, source_tree, proxy, tmp_path):  # noqa: F811
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"s3://{bucket}", dest, proxy.endpoint)
    size = (source_tree / layout.STIMULI).stat().st_size
    cut_at = size * 2 // 3
    proxy.cut(layout.STIMULI, after_bytes=cut_at)

    stats = quick(nsd, "shared")

    gets = proxy.object_gets(layout.STIMULI)
    assert len(gets) == 2 and "range" not in gets[0].headers
    start = int(gets[1].headers["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= cut_at  # kept what arrived (up to the chunk being read when it broke)
    assert stats.retries == 1 and stats.actions["fetch"] == 5
    assert md5(dest / layout.STIMULI) == md5(source_tree / layout.STIMULI)
    assert read_records(dest / "manifest" / "shared.tsv")[layout.STIMULI].md5 == md5(source_tree / layout.STIMULI)


def test_interrupted_run_keeps_its_part_and_the_next_run_continues_from_it(sim_cfg, bucket, source_tree, proxy,  # noqa: F811
                                                                           tmp_path):
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"s3://{bucket}", dest, proxy.endpoint)
    cut_at = (source_tree / layout.STIMULI).stat().st_size * 9 // 10
    proxy.cut(layout.STIMULI, after_bytes=cut_at)
    with pytest.raises(FetchError, match="gave up after 1 failed attempts"):
        quick(nsd, "shared", retries=0)
    part = dest / ".fetch" / "objects" / (layout.STIMULI + ".part")
    kept = part.stat().st_size
    assert 0 < kept <= cut_at and not (dest / layout.STIMULI).exists()
    proxy.reset()

    stats = quick(nsd, "shared")

    gets = proxy.object_gets(layout.STIMULI)
    # the last OVERLAP bytes of the part are downloaded again and compared, then the rest
    overlap = max(0, kept - OVERLAP)
    assert [g.headers.get("range") for g in gets] == [f"bytes={overlap}-{kept - 1}", f"bytes={kept}-"]
    assert stats.resumed == 1
    assert md5(dest / layout.STIMULI) == md5(source_tree / layout.STIMULI)
    assert not part.exists()


def test_bytes_corrupted_in_transit_fail_the_md5_and_are_fetched_again(sim_cfg, bucket, source_tree, proxy,  # noqa: F811
                                                                         tmp_path):
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"s3://{bucket}", dest, proxy.endpoint)
    key = layout.STIM_INFO
    proxy.flip(key, at_byte=50)

    stats = quick(nsd, "shared")

    gets = proxy.object_gets(key)
    assert len(gets) == 2 and all("range" not in g.headers for g in gets)  # restarted from byte 0
    assert stats.retries == 1
    assert_identical(dest, source_tree, [key])


def _multipart_bucket(moto_s3, source_tree, name: str, body: bytes, part: int) -> str:  # noqa: F811
    """A bucket with the shared keys, the stimuli file uploaded in parts of ``part`` bytes. Returns the ETag."""
    moto_s3.public_bucket(name)
    for key in layout.shared_keys() + [f"{layout.CAPTIONS_DIR}/{k}" for k in layout.caption_keys()]:
        if key != layout.STIMULI:
            moto_s3.admin.put_object(Bucket=name, Key=key, Body=(source_tree / key).read_bytes())
    return moto_s3.put_multipart(name, layout.STIMULI, [body[i:i + part] for i in range(0, len(body), part)])


def test_multipart_etag_is_recomputed_and_verified(sim_cfg, moto_s3, source_tree, proxy, tmp_path, caplog):  # noqa: F811
    part = 5 * 1024 * 1024
    body = os.urandom(2 * part) + b"tail"
    etag = _multipart_bucket(moto_s3, source_tree, "nsd-multipart", body, part)
    assert etag.endswith("-3")
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, "s3://nsd-multipart", dest, proxy.endpoint)

    with caplog.at_level("INFO", logger="brainot.data.fetch"):
        stats = quick(nsd, "shared")

    assert stats.size_only == []
    assert (dest / layout.STIMULI).read_bytes() == body
    rec = read_records(dest / "manifest" / "shared.tsv")[layout.STIMULI]
    assert (rec.verified, rec.size, rec.md5, rec.etag) == ("etag", len(body), hashlib.md5(body).hexdigest(), etag)
    assert "size + etag verified" in caplog.text


def test_multipart_etag_mismatch_is_fetched_again(sim_cfg, moto_s3, source_tree, proxy, tmp_path):  # noqa: F811
    # One byte flipped in transit inside the second part: size fine, the recomputed multipart ETag is not.
    part = 5 * 1024 * 1024
    body = os.urandom(2 * part) + b"tail"
    _multipart_bucket(moto_s3, source_tree, "nsd-multipart-flip", body, part)
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, "s3://nsd-multipart-flip", dest, proxy.endpoint)
    proxy.flip(layout.STIMULI, at_byte=part + 100)

    stats = quick(nsd, "shared")

    assert stats.retries == 1 and len(proxy.object_gets(layout.STIMULI)) == 2
    assert (dest / layout.STIMULI).read_bytes() == body


def test_s3_sha256_checksums_are_verified_whole_and_composite(sim_cfg, moto_s3, source_tree, proxy, tmp_path):  # noqa: F811
    name = moto_s3.public_bucket("nsd-sha256")
    part = 5 * 1024 * 1024
    body = os.urandom(part) + b"tail"
    for key in layout.shared_keys() + [f"{layout.CAPTIONS_DIR}/{k}" for k in layout.caption_keys()]:
        if key != layout.STIMULI:
            moto_s3.admin.put_object(Bucket=name, Key=key, Body=(source_tree / key).read_bytes(),
                                     ChecksumAlgorithm="SHA256")
    upload = moto_s3.admin.create_multipart_upload(Bucket=name, Key=layout.STIMULI, ChecksumAlgorithm="SHA256")
    done = []
    for number, chunk in enumerate([body[:part], body[part:]], 1):
        r = moto_s3.admin.upload_part(Bucket=name, Key=layout.STIMULI, PartNumber=number, Body=chunk,
                                      UploadId=upload["UploadId"], ChecksumAlgorithm="SHA256")
        done.append({"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
    moto_s3.admin.complete_multipart_upload(Bucket=name, Key=layout.STIMULI, UploadId=upload["UploadId"],
                                            MultipartUpload={"Parts": done})
    dest = tmp_path / "nsd"
    quick(nsd_section(sim_cfg, f"s3://{name}", dest, proxy.endpoint), "shared")
    rows = read_records(dest / "manifest" / "shared.tsv")
    assert rows[layout.STIMULI].verified == "etag+sha256"       # composite: SHA-256 of the parts' SHA-256s
    assert rows[layout.STIM_INFO].verified == "md5+sha256"
    assert (dest / layout.STIMULI).read_bytes() == body


def test_part_size_candidates_split_the_object_into_its_part_count():
    mib = 1024 * 1024
    assert part_size_candidates(20 * mib, 3, known=8 * mib) == (8 * mib,)
    assert part_size_candidates(20 * mib, 3) == (8 * mib,)             # the AWS CLI's default fits
    assert part_size_candidates(100 * mib, 2) == (50 * mib, 64 * mib)   # every common size that gives 2 parts
    assert part_size_candidates(20 * mib, 3, known=5 * mib) == (8 * mib,)  # a wrong "known" size is not used
    assert all(-(-(7 * mib + 5) // p) == 7 for p in part_size_candidates(7 * mib + 5, 7))


def _torn_part(dest: Path, key: str, body: bytes, etag: str, zero_from: int, zero_to: int) -> Path:
    """What a machine crash can leave: a part of the full length whose bytes ``zero_from:zero_to`` never reached
    the disk (zeros), recorded as holding this object version."""
    from brainot.data.fetch.store import Store

    store = Store(dest)
    store.start_part(key, etag, len(body))
    torn = bytearray(body)
    torn[zero_from:zero_to] = bytes(zero_to - zero_from)
    store.part(key).write_bytes(bytes(torn))
    return store.part(key)


def test_torn_part_tail_is_found_by_the_overlap_and_fetched_again(sim_cfg, source_tree, tmp_path, caplog):
    # A file:// source: no stored checksum, so the re-read overlap is what catches the torn tail first.
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"file://{source_tree}", dest)
    src = source_tree / layout.STIMULI
    body = src.read_bytes()
    _torn_part(dest, layout.STIMULI, body, f"mtime:{src.stat().st_mtime_ns}", len(body) - 1000, len(body))

    with caplog.at_level("WARNING", logger="brainot.data.fetch"):
        stats = quick(nsd, "shared")

    assert "differs from the source in bytes" in caplog.text and stats.retries == 1
    assert (dest / layout.STIMULI).read_bytes() == body
    assert read_records(dest / "manifest" / "shared.tsv")[layout.STIMULI].verified == "source-md5"


def test_torn_part_before_the_overlap_is_found_by_the_multipart_etag(sim_cfg, moto_s3, source_tree, proxy,  # noqa: F811
                                                                      tmp_path, caplog):
    part = 5 * 1024 * 1024
    body = os.urandom(2 * part) + b"tail"
    etag = _multipart_bucket(moto_s3, source_tree, "nsd-multipart-torn", body, part)
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, "s3://nsd-multipart-torn", dest, proxy.endpoint)
    _torn_part(dest, layout.STIMULI, body, etag, 1000, 5000)   # well before the re-read last OVERLAP bytes

    with caplog.at_level("WARNING", logger="brainot.data.fetch"):
        stats = quick(nsd, "shared")

    assert "multipart ETag of the local bytes" in caplog.text and stats.retries == 1
    gets = [g.headers.get("range") for g in proxy.object_gets(layout.STIMULI)]
    assert gets == [f"bytes={len(body) - OVERLAP}-{len(body) - 1}", None]  # overlap passed; then all again
    assert (dest / layout.STIMULI).read_bytes() == body


def test_a_source_truncated_upstream_never_replaces_the_verified_copy(sim_cfg, moto_s3, source_tree, proxy,  # noqa: F811
                                                                     tmp_path, caplog):
    name = moto_s3.public_bucket("nsd-changing")
    for key in layout.shared_keys() + [f"{layout.CAPTIONS_DIR}/{k}" for k in layout.caption_keys()]:
        moto_s3.admin.put_object(Bucket=name, Key=key, Body=(source_tree / key).read_bytes())
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"s3://{name}", dest, proxy.endpoint)
    quick(nsd, "shared")
    key = layout.STIM_INFO
    good = (source_tree / key).read_bytes()

    moto_s3.admin.put_object(Bucket=name, Key=key, Body=good[:len(good) // 2])   # a truncated re-upload
    (dest / key).unlink()                                                           # as Snakemake does
    proxy.reset()
    with pytest.raises(FetchError, match="got shorter at their source than the verified local copy") as info:
        quick(nsd, "shared")
    assert f"s3://{name}/{key}: now {len(good) // 2} bytes" in str(info.value)
    assert proxy.object_gets() == []                                                # nothing downloaded
    assert (dest / ".fetch" / "objects" / key).read_bytes() == good                 # the good copy is kept
    assert read_records(dest / ".fetch" / "journal" / "shared.tsv")[key].size == len(good)

    # A new version of the same length, with its ETag: downloaded beside the copy, verified, then swapped in.
    new = bytes(reversed(good))
    moto_s3.admin.put_object(Bucket=name, Key=key, Body=new)
    with caplog.at_level("WARNING", logger="brainot.data.fetch"):
        stats = quick(nsd, "shared")
    assert stats.actions["changed"] == 1 and "changed at the source" in caplog.text
    assert (dest / key).read_bytes() == new
    assert read_records(dest / "manifest" / "shared.tsv")[key].md5 == hashlib.md5(new).hexdigest()


def test_verify_full_checks_a_size_only_record_against_the_source(sim_cfg, source_tree, tmp_path):
    # What an earlier version recorded for a file:// key: verified by size only, the MD5 of its own (here
    # torn) bytes. --verify full compares the file with the source, not with that MD5.
    from brainot.data.fetch.store import Store, write_manifest

    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"file://{source_tree}", dest)
    quick(nsd, "shared")
    key = layout.STIM_INFO
    with open(dest / key, "r+b") as fh:          # in place: the kept hard link is torn too
        fh.seek(-100, os.SEEK_END)
        fh.write(bytes(100))
    store = Store(dest)
    records = read_records(store.journal("shared"))
    records[key] = dataclasses.replace(records[key], md5=md5(dest / key), verified="size")
    for path in (store.journal("shared"), store.manifest("shared")):
        write_manifest(path, list(records.values()))

    assert quick(nsd, "shared", verify="full").actions["fetch"] == 1
    assert_identical(dest, source_tree, [key])
    assert read_records(dest / "manifest" / "shared.tsv")[key].verified == "source-md5"
    again = quick(nsd, "shared", verify="full")
    assert again.actions["present"] == again.keys


def test_missing_key_names_the_key_and_the_source(sim_cfg, source_tree, tmp_path):
    source = f"file://{source_tree}"
    nsd = nsd_section(sim_cfg, source, tmp_path / "nsd")
    nsd["sessions"]["last"] = 5  # the source has sessions 1-4

    with pytest.raises(MissingKeyError) as err:
        quick(nsd, "subj01")

    assert err.value.keys == [layout.betas(1, 5), layout.valid_session(1, 5)]
    assert f"{source}/{layout.betas(1, 5)}" in str(err.value) and "(nsd.source)" in str(err.value)
    assert not (tmp_path / "nsd").exists()  # nothing was fetched: the plan failed first


def test_missing_key_on_s3_is_listed_by_a_dry_run_and_stops_a_fetch(sim_cfg, bucket, moto_s3, tmp_path):  # noqa: F811
    nsd = nsd_section(sim_cfg, f"s3://{bucket}", tmp_path / "nsd", moto_s3.endpoint)
    nsd["sessions"]["last"] = 5
    absent = [layout.betas(7, 5), layout.valid_session(7, 5)]

    dry = quick(nsd, "subj07", dry_run=True)
    assert dry.missing == absent and dry.actions["fetch"] == dry.keys - 2
    assert f"MISSING  s3://{bucket}/{absent[0]} (nsd.source)" in dry.plan  # sizes of the rest are still reported

    with pytest.raises(MissingKeyError) as err:
        quick(nsd, "subj07")
    assert f"2 key(s) missing from s3://{bucket} (nsd.source)" in str(err.value)
    assert f"s3://{bucket}/{absent[0]}" in str(err.value)
    assert not (tmp_path / "nsd").exists()


def test_bad_sources_name_their_setting(sim_cfg, source_tree, tmp_path):
    nsd = nsd_section(sim_cfg, "ftp://example.org/nsd", tmp_path)
    with pytest.raises(FetchError, match=r"nsd\.source: unsupported source 'ftp://example.org/nsd'"):
        quick(nsd, "shared")
    nsd = nsd_section(sim_cfg, f"file://{source_tree}", tmp_path, captions_source="ftp://example.org/coco")
    with pytest.raises(FetchError, match=r"nsd\.captions_source: unsupported source"):
        quick(nsd, "shared")
    nsd = nsd_section(sim_cfg, f"file://{tmp_path}/nowhere", tmp_path)
    with pytest.raises(FetchError, match=r"nsd\.source: .*nowhere.* does not exist"):
        quick(nsd, "shared")
    with pytest.raises(FetchError, match=r"subj03: not one of nsd.subjects"):
        quick(nsd_section(sim_cfg, f"file://{source_tree}", tmp_path), "subj03")
    with pytest.raises(FetchError, match=r"--nsd: no dir, subjects, sessions, space, beta_version"):
        quick({"source": f"file://{source_tree}"}, "shared")


# --- local directory and caption sources ------------------------------------------------------------------------

def test_file_source_fetches_reruns_and_repairs_the_same_way(sim_cfg, source_tree, tmp_path, monkeypatch):
    # A relative file:// path is relative to the working directory (the demo's file://resources/simulated-nsd).
    monkeypatch.chdir(source_tree.parent)
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"file://{source_tree.name}", dest)
    keys = wanted_keys(nsd)

    first = quick(nsd)
    assert first.actions["fetch"] == len(keys)
    assert_identical(dest, source_tree, keys)
    rows = read_records(dest / "manifest" / "subj05.tsv")
    assert all(r.md5 == md5(source_tree / k) and r.verified == "source-md5" for k, r in rows.items())

    assert quick(nsd).actions["present"] == len(keys)
    (dest / layout.EXPDESIGN).unlink()  # replaced by another file: the kept hard link still holds the fetched one
    (dest / layout.EXPDESIGN).write_bytes(b"not a mat file")
    repaired = quick(nsd, "shared")
    assert repaired.actions["restore"] == 1 and repaired.received == 0
    assert_identical(dest, source_tree, [layout.EXPDESIGN])


def test_captions_come_from_their_own_source(sim_cfg, bucket, moto_s3, source_tree, proxy, tmp_path):  # noqa: F811
    coco = moto_s3.public_bucket("coco-annotations")
    for name in layout.caption_keys():
        moto_s3.admin.put_object(Bucket=coco, Key=f"annotations/{name}", Body=b'{"annotations": []}' + name.encode())
    local = [f"{layout.CAPTIONS_DIR}/{name}" for name in layout.caption_keys()]
    for i, captions in enumerate([f"s3://{coco}/annotations", f"{proxy.endpoint}/{coco}/annotations"]):
        dest = tmp_path / f"nsd{i}"
        nsd = nsd_section(sim_cfg, f"file://{source_tree}", dest, proxy.endpoint, captions_source=captions)
        quick(nsd, "shared")
        for key, name in zip(local, layout.caption_keys()):
            assert (dest / key).read_bytes() == b'{"annotations": []}' + name.encode()
        assert read_records(dest / "manifest" / "shared.tsv")[local[0]].source == f"{captions}/{local[0].split('/')[-1]}"


def test_dry_run_lists_the_keys_and_total_size_and_writes_nothing(sim_cfg, bucket, source_tree, proxy, tmp_path):  # noqa: F811
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"s3://{bucket}", dest, proxy.endpoint)
    keys = wanted_keys(nsd)
    total = sum((source_tree / k).stat().st_size for k in keys)

    stats = quick(nsd, dry_run=True)

    assert stats.to_download == total and stats.actions["fetch"] == len(keys)
    assert f"total to fetch: {len(keys)} of {len(keys)} keys" in stats.plan and f"({total} bytes)" in stats.plan
    assert all(k in stats.plan for k in keys)
    assert not dest.exists() and proxy.object_gets() == []
    # A dry run lists objects instead of HEADing each: a few requests per directory, not one per key.
    assert len(proxy.requests) < len(keys) / 2

    quick(nsd, "shared")
    rest = quick(nsd, dry_run=True)
    assert rest.actions["fetch"] == len(keys) - 5 and rest.actions["present"] == 5
    assert layout.STIMULI not in rest.plan.split("shared:")[0]


def test_cli_runs_reports_and_fails_clearly(sim_cfg, source_tree, tmp_path):
    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"file://{source_tree}", dest)
    families = json.dumps(["floc-faces"])

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "brainot.data.fetch", "--nsd", json.dumps(nsd), "--families",
                               families, *args], capture_output=True, text=True, timeout=120)

    dry = cli("--group", "subj01", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "total to fetch: 12 of 12 keys" in dry.stdout and not dest.exists()  # 4 sessions x 2 + valid + nsdgeneral + floc-faces and its ctab

    run = cli("--group", "subj01", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "done: subj01: 12 keys" in run.stdout and "12 to fetch" in run.stdout
    assert len(read_records(dest / "manifest" / "subj01.tsv")) == 12
    assert (dest / layout.roi(1, "floc-faces")).is_file() and not (dest / layout.roi(1, "floc-words")).exists()

    nsd["sessions"]["last"] = 6
    bad = cli("--group", "subj01", "--dry-run")
    assert bad.returncode == 1
    assert "total to fetch: 0 of 16 keys" in bad.stdout  # 12 present, 4 missing (sessions 5, 6)
    assert "MISSING from their source: 4 keys" in bad.stdout
    assert layout.betas(1, 5) in bad.stderr and f"file://{source_tree}" in bad.stderr


def test_snakemake_rerun_of_a_fetch_rule_relinks_instead_of_downloading(sim_cfg, source_tree, tmp_path):
    """Snakemake deletes a rule's outputs before rerunning it: the kept hard links make that rerun free."""
    repo = Path(__file__).resolve().parents[1]
    nsd = nsd_section(sim_cfg, f"file://{source_tree}", tmp_path / "nsd")
    quick(nsd, "subj01")
    inodes = {k: (tmp_path / "nsd" / k).stat().st_ino for k in layout.subject_keys(nsd, 1)}
    overlay = tmp_path / "overlay.json"
    overlay.write_text(json.dumps({"nsd": {"source": nsd["source"], "dir": "nsd", "sessions": nsd["sessions"]}}))

    run = subprocess.run([sys.executable, "-m", "snakemake", "nsd/manifest/subj01.tsv", "-s", str(repo / "Snakefile"),
                          "-d", str(tmp_path), "--cores", "1", "--forcerun", "fetch_subject",
                          "--configfile", str(repo / "config.yaml"), str(repo / "demo" / "config.yaml"), str(overlay)],
                         capture_output=True, text=True, timeout=300)

    assert run.returncode == 0, run.stderr[-3000:]
    log = (tmp_path / "logs" / "fetch" / "subj01.log").read_text()
    assert f"{len(inodes)} restored, 0 adopted, 0 changed at the source, 0 to fetch" in log
    assert {k: (tmp_path / "nsd" / k).stat().st_ino for k in inodes} == inodes  # the same bytes, not copies
    assert_identical(tmp_path / "nsd", source_tree, list(inodes))


def test_a_complete_part_left_by_a_killed_run_is_checked_and_verified_not_downloaded(sim_cfg, bucket, source_tree,  # noqa: F811
                                                                                      proxy, tmp_path):
    from brainot.data.fetch.store import Store

    dest = tmp_path / "nsd"
    nsd = nsd_section(sim_cfg, f"s3://{bucket}", dest, proxy.endpoint)
    body = (source_tree / layout.STIM_INFO).read_bytes()
    # A run killed after the last byte arrived, before the rename (single-part upload: ETag == MD5).
    store = Store(dest)
    store.start_part(layout.STIM_INFO, hashlib.md5(body).hexdigest(), len(body))
    store.part(layout.STIM_INFO).write_bytes(body)

    stats = quick(nsd, "shared")

    # Only its last OVERLAP bytes (here: all of it) are read again, to compare; then the MD5 is checked.
    ranges = [g.headers.get("range") for g in proxy.object_gets(layout.STIM_INFO)]
    assert ranges == [f"bytes={max(0, len(body) - OVERLAP)}-{len(body) - 1}"] and stats.resumed == 1
    assert (dest / layout.STIM_INFO).read_bytes() == body
