"""COCO captions from COCO's own annotation archive: download, size and MD5 check, extract the two caption files
once; and how nsd.captions_source reaches the fetch. The archive is built here and served from a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainot.data import coco
from brainot.data import layout
from brainot.data.fetch import groups

CAPTIONS = {
    "captions_train2017.json": {"images": [{"id": 9}], "annotations": [{"image_id": 9, "id": 1, "caption": "A cat."}]},
    "captions_val2017.json": {"images": [{"id": 139}], "annotations": [{"image_id": 139, "id": 2, "caption": "A dog."}]},
}


def build_archive(path: Path) -> tuple[int, str]:
    """A zip in COCO's layout (annotations/...), with an instances file that must not be kept."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in CAPTIONS.items():
            zf.writestr(f"annotations/{name}", json.dumps(data))
        zf.writestr("annotations/instances_val2017.json", json.dumps({"annotations": []}) + " " * 5000)
    blob = path.read_bytes()
    return len(blob), hashlib.md5(blob).hexdigest()


@pytest.fixture
def server(tmp_path):
    """A local HTTP server of tmp_path/www, counting the requests it answers."""
    root = tmp_path / "www"
    (root / "annotations").mkdir(parents=True)
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", root, requests
    httpd.shutdown()
    httpd.server_close()


def test_archive_is_checked_and_only_the_two_caption_files_are_kept_once(server, tmp_path):
    base, root, requests = server
    size, md5 = build_archive(root / "annotations" / "annotations_trainval2017.zip")
    url = f"{base}/annotations/annotations_trainval2017.zip"
    out = tmp_path / "nsd" / "coco-annotations"
    paths = coco.fetch_annotations(url, size, md5, out)
    assert [p.name for p in paths] == [layout.captions(s) for s in layout.COCO_SPLITS]
    assert sorted(p.name for p in out.iterdir()) == [".source.json", "captions_train2017.json",
                                                     "captions_val2017.json"]
    for p in paths:
        assert json.loads(p.read_text()) == CAPTIONS[p.name]
    assert coco.read_coco_captions(paths[1]) == {139: ["A dog."]}
    n = len(requests)
    assert n == 1
    # extracted once: a second call with the same archive settings downloads nothing
    assert coco.fetch_annotations(url, size, md5, out) == paths and len(requests) == n
    # other settings (here no MD5 check) fetch again
    coco.fetch_annotations(url, size, None, out)
    assert len(requests) == n + 1


@pytest.mark.parametrize("what", ["size", "md5"])
def test_a_wrong_size_or_md5_is_refused_and_leaves_nothing(server, tmp_path, what):
    base, root, _ = server
    size, md5 = build_archive(root / "annotations" / "annotations_trainval2017.zip")
    url = f"{base}/annotations/annotations_trainval2017.zip"
    bad = {"size": (size + 1, md5), "md5": (size, "0" * 32)}[what]
    out = tmp_path / "out"
    with pytest.raises(coco.CaptionError, match=f"{what.upper() if what == 'md5' else what} .* differs from "
                                                f"nsd.coco_annotations.{what}"):
        coco.fetch_annotations(url, *bad, out)
    assert list(out.iterdir()) == []


def test_file_url_and_a_zip_without_the_captions(tmp_path):
    archive = tmp_path / "annotations_trainval2017.zip"
    size, md5 = build_archive(archive)
    paths = coco.fetch_annotations(archive.as_uri(), size, md5, tmp_path / "out")
    assert all(p.exists() for p in paths) and archive.exists()   # the source itself is left alone
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("annotations/instances_val2017.json", "{}")
    with pytest.raises(coco.CaptionError, match=r"no member\(s\) \['annotations/captions_train2017.json'"):
        coco.fetch_annotations(other.as_uri(), None, None, tmp_path / "out2")
    with pytest.raises(coco.CaptionError, match="expected an http"):
        coco.fetch_annotations("ftp://example.org/a.zip", None, None, tmp_path / "out3")


def test_captions_source_defaults_to_cocos_archive_with_its_published_size_and_md5(sim_cfg):
    from brainot import config as bcfg

    cfg = bcfg.load(bcfg.REPO / "config.yaml")
    assert cfg["nsd"]["captions_source"] == "coco"
    assert cfg["nsd"]["coco_annotations"] == {
        "url": "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
        "size": 252907541, "md5": "f4bbac642086de4f52a3fdda2de5fa2c"}
    assert sim_cfg["nsd"]["captions_source"] == "nsd"   # the demo: the simulator writes them in the NSD layout


@pytest.mark.parametrize("source, url, prefix", [
    ("coco", "file://{dir}/coco-annotations", ""),
    ("nsd", "file://{src}", f"{layout.CAPTIONS_DIR}/"),
    ("file://{dir}", "file://{dir}", ""),
])
def test_the_fetch_reads_the_captions_from_the_chosen_source(sim_cfg, tmp_path, source, url, prefix):
    src = tmp_path / "bucket"
    src.mkdir()
    (tmp_path / "nsd").mkdir()
    source = source.format(dir=tmp_path / "nsd")
    nsd = dict(sim_cfg["nsd"], source=f"file://{src}", dir=str(tmp_path / "nsd"), captions_source=source)
    if source == "coco":
        # before python -m brainot.data.coco (rule coco_captions) has extracted the archive, the fetch says where
        with pytest.raises(groups.FetchError, match="coco-annotations.* does not exist"):
            groups.wanted(nsd, None, "shared")
        coco.archive_dir(nsd).mkdir(parents=True)
    items = [w for w in groups.wanted(nsd, None, "shared") if w.key.startswith(layout.CAPTIONS_DIR)]
    assert [w.key for w in items] == [f"{layout.CAPTIONS_DIR}/{k}" for k in layout.caption_keys()]
    expected = url.format(dir=(tmp_path / "nsd").resolve(), src=src)
    assert {w.source.url for w in items} == {expected}
    assert [w.remote for w in items] == [prefix + k for k in layout.caption_keys()]


def test_cli_extracts_into_the_nsd_directory(tmp_path, sim_cfg):
    archive = tmp_path / "annotations_trainval2017.zip"
    size, md5 = build_archive(archive)
    nsd = dict(sim_cfg["nsd"], dir=str(tmp_path / "nsd"), captions_source="coco",
               coco_annotations={"url": archive.as_uri(), "size": size, "md5": md5})
    assert coco.main(["--nsd", json.dumps(nsd)]) == 0
    assert sorted(p.name for p in coco.archive_dir(nsd).glob("captions_*.json")) == sorted(CAPTIONS)
    nsd["coco_annotations"]["md5"] = "1" * 32
    (coco.archive_dir(nsd) / ".source.json").unlink()
    assert coco.main(["--nsd", json.dumps(nsd)]) == 1


def test_shared1000_is_read_one_way_whatever_the_cell_type(tmp_path):
    for cells in ([True, False, True], ["True", "False", "True"], [1, 0, 1], ["true", "false", "TRUE"]):
        path = tmp_path / "stim.csv"
        pd.DataFrame({"nsdId": range(3), "shared1000": cells}).to_csv(path)
        table = pd.read_csv(path, index_col=0)
        np.testing.assert_array_equal(coco.shared1000(table, path), [True, False, True])
    bad = pd.DataFrame({"nsdId": range(2), "shared1000": ["yes", "no"]})
    with pytest.raises(coco.CaptionError, match=r"stim.csv: shared1000 is 'yes' in row 0; expected True or False"):
        coco.shared1000(bad, tmp_path / "stim.csv")
    with pytest.raises(coco.CaptionError, match=r"stim.csv: no column 'shared1000'"):
        coco.shared1000(bad.drop(columns="shared1000"), tmp_path / "stim.csv")
