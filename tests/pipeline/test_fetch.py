"""fetch: downloads against a local HTTP server, safe extraction, COCO from a mirror, synthetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline.common.archive import extract_zip
from pipeline.common.download import download
from pipeline.common.errors import StageError, run_stage
from pipeline.data import fetch, stage
from pipeline.data.synthetic import SyntheticCocoConfig, generate_coco

PAYLOAD = bytes(range(256)) * 400  # 100 KiB, not compressible to nothing


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep requests to 127.0.0.1 local whatever proxy the environment sets."""
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")


def _leftovers(directory: Path) -> list[str]:
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# --------------------------------------------------------------------------- download


def test_download_good_archive(http_server, tmp_path, md5):
    http_server.served.files["/a.zip"] = PAYLOAD
    dest = download(f"{http_server.url}/a.zip", tmp_path / "a.zip", md5=md5(PAYLOAD),
                    size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "a.zip.part").exists()
    n = len(http_server.served.requests)
    download(f"{http_server.url}/a.zip", dest, md5=md5(PAYLOAD), size=len(PAYLOAD), progress=False)
    assert len(http_server.served.requests) == n  # verified file on disk: no second transfer


def test_download_wrong_md5_deletes_part(http_server, tmp_path):
    http_server.served.files["/a.zip"] = PAYLOAD
    with pytest.raises(StageError, match=r"a\.zip.*MD5 is [0-9a-f]{32}, expected 0{32}"):
        download(f"{http_server.url}/a.zip", tmp_path / "a.zip", md5="0" * 32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_wrong_size(http_server, tmp_path, md5):
    http_server.served.files["/a.zip"] = PAYLOAD
    with pytest.raises(StageError, match="server reports 102400 bytes, expected 102401"):
        download(f"{http_server.url}/a.zip", tmp_path / "a.zip", md5=md5(PAYLOAD),
                 size=len(PAYLOAD) + 1, retries=0, progress=False)
    assert not (tmp_path / "a.zip").exists()


def test_download_cut_short_then_resumed(http_server, tmp_path, md5):
    served = http_server.served
    served.files["/a.zip"] = PAYLOAD
    served.cut_once["/a.zip"] = 30_000
    dest = download(f"{http_server.url}/a.zip", tmp_path / "a.zip", md5=md5(PAYLOAD),
                    size=len(PAYLOAD), retries=2, retry_wait=0, progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in served.requests] == [None, "bytes=30000-"]


def test_download_resumes_part_left_by_earlier_run(http_server, tmp_path, md5):
    http_server.served.files["/a.zip"] = PAYLOAD
    (tmp_path / "a.zip.part").write_bytes(PAYLOAD[:40_000])
    dest = download(f"{http_server.url}/a.zip", tmp_path / "a.zip", md5=md5(PAYLOAD),
                    size=len(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [r["range"] for r in http_server.served.requests] == ["bytes=40000-"]


def test_download_gives_up_after_retries_and_keeps_part(http_server, tmp_path, md5):
    served = http_server.served
    served.files["/a.zip"] = PAYLOAD
    served.cut_once["/a.zip"] = 10_000
    with pytest.raises(StageError, match=r"failed after 1 attempts.*cut short at byte 10000"):
        download(f"{http_server.url}/a.zip", tmp_path / "a.zip", md5=md5(PAYLOAD),
                 size=len(PAYLOAD), retries=0, progress=False)
    assert (tmp_path / "a.zip.part").stat().st_size == 10_000
    assert not (tmp_path / "a.zip").exists()


def test_download_http_404_is_not_retried(http_server, tmp_path):
    with pytest.raises(StageError, match=r"missing\.zip: HTTP 404"):
        download(f"{http_server.url}/missing.zip", tmp_path / "m.zip", md5="0" * 32,
                 retries=3, retry_wait=0, progress=False)
    assert len(http_server.served.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_download_http_500_is_retried_then_fails(http_server, tmp_path):
    http_server.served.status["/a.zip"] = 500
    with pytest.raises(StageError, match=r"failed after 3 attempts.*HTTP 500"):
        download(f"{http_server.url}/a.zip", tmp_path / "a.zip", md5="0" * 32,
                 retries=2, retry_wait=0, progress=False)
    assert len(http_server.served.requests) == 3
    assert not (tmp_path / "a.zip").exists()


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(("member", "why"), [
    ("../evil.txt", "contains '..'"),
    ("ok/../../evil.txt", "contains '..'"),
    ("/etc/evil.txt", "absolute path"),
    ("C:/evil.txt", "absolute path"),
    # backslash forms: Windows separators, turned into '/' before the checks
    ("..\\..\\evil.txt", "contains '..'"),
    ("ok\\..\\..\\evil.txt", "contains '..'"),
    ("\\etc\\evil.txt", "absolute path"),
    ("C:\\evil.txt", "absolute path"),
])
def test_extract_refuses_unsafe_member(tmp_path, make_zip, member, why):
    archive = make_zip(tmp_path / "bad.zip", {"fine/a.txt": b"a", member: b"x"})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(StageError, match=rf"bad\.zip: member .*{why}"):
        extract_zip(archive, dest, progress=False)
    assert list(dest.iterdir()) == []  # checked before anything is written
    assert not (tmp_path / "evil.txt").exists()


def test_extract_refuses_symlink(tmp_path, make_zip):
    archive = make_zip(tmp_path / "bad.zip", {"a.txt": b"a"}, symlinks={"link": "/etc/passwd"})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(StageError, match="member 'link' is a symbolic link"):
        extract_zip(archive, dest, progress=False)
    assert list(dest.iterdir()) == []


def test_extract_rejects_corrupt_zip(tmp_path):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(StageError, match=r"bad\.zip: not a readable zip archive"):
        extract_zip(archive, tmp_path, progress=False)


# --------------------------------------------------------------------------- published checksums


def test_published_checksums_are_the_official_values():
    section = fetch.load_checksums(fetch.DEFAULT_CHECKSUMS, "coco2017")
    coco = {a["name"]: a for a in section["archives"]}
    assert {n: (a["bytes"], a["md5"]) for n, a in coco.items()} == {
        "train2017.zip": (19_336_861_798, "cced6f7f71b7629ddf16f17bbcfab6b2"),
        "val2017.zip": (815_585_330, "442b8da7639aecaf257c1dceb8ba8c80"),
        "annotations_trainval2017.zip": (252_907_541, "f4bbac642086de4f52a3fdda2de5fa2c"),
    }
    cs = fetch.load_checksums(fetch.DEFAULT_CHECKSUMS, "cityscapes")
    assert {a["name"]: a["md5"] for a in cs["archives"]} == {
        "gtFine_trainvaltest.zip": "4237c19de34c8a376e9ba46b495d6f66",
        "leftImg8bit_trainvaltest.zip": "0a6e97e94b616a514066c9e2adb0c97f",
    }


def test_checksums_file_is_validated(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text(yaml.safe_dump({"coco2017": {"host": "h", "archives": [
        {"name": "a.zip", "md5": "xyz", "provides": []}]}}))
    with pytest.raises(StageError, match=r"coco2017\.archives\[0\]\.md5: 'xyz' is not an MD5"):
        fetch.load_checksums(bad, "coco2017")


# --------------------------------------------------------------------------- coco2017 from a mirror


@pytest.fixture
def coco_mirror(tmp_path, http_server, zip_tree, md5):
    """Tiny COCO-layout archives (the synthetic generator's output) served like the official host,
    with a checksums file describing them."""
    src = tmp_path / "src"
    generate_coco(src, SyntheticCocoConfig(min_side=64, max_side=80, num_train=2, num_val=2),
                  progress=False)
    entries = []
    for name, top, url_path, provides in [
        ("train2017.zip", "train2017", "zips/train2017.zip", ["train2017"]),
        ("val2017.zip", "val2017", "zips/val2017.zip", ["val2017"]),
        ("annotations_trainval2017.zip", "annotations",
         "annotations/annotations_trainval2017.zip", ["annotations/instances_val2017.json"]),
    ]:
        data = zip_tree(tmp_path / "zips" / name, src, top).read_bytes()
        http_server.served.files[f"/{url_path}"] = data
        entries.append({"name": name, "path": url_path, "md5": md5(data), "bytes": len(data),
                        "provides": provides})
    checksums = tmp_path / "checksums.yaml"
    checksums.write_text(yaml.safe_dump({"coco2017": {"host": "http://unused.invalid",
                                                      "archives": entries}}))
    return checksums


def _coco_cfg(tmp_path: Path, mirror: str, checksums: Path, **kw) -> fetch.FetchConfig:
    return fetch.FetchConfig(dataset="coco2017", root=tmp_path / "raw" / "coco2017",
                             archives_dir=tmp_path / "archives", mirror=mirror,
                             checksums=checksums, progress=False, retry_wait=0, **kw)


def _fetch_stage(data: str, *overrides: str) -> int:
    """``python -m pipeline.data fetch <data> overrides…`` in this process; its exit status."""
    return run_stage(stage.main, ["fetch", data, *overrides])


def test_fetch_coco2017_from_mirror(tmp_path, http_server, coco_mirror):
    root = fetch.run(_coco_cfg(tmp_path, http_server.url, coco_mirror))
    assert sorted(p.name for p in root.iterdir()) == [
        "annotations", "fetch_info.json", "train2017", "val2017"]
    assert len(list((root / "train2017").glob("*.jpg"))) == 2
    info = json.loads((root / "fetch_info.json").read_text())
    assert [a["name"] for a in info["request"]["archives"]] == [
        "train2017.zip", "val2017.zip", "annotations_trainval2017.zip"]
    # a second run with the same request is a no-op: no HTTP, same tree
    n = len(http_server.served.requests)
    assert fetch.run(_coco_cfg(tmp_path, http_server.url, coco_mirror)) == root
    assert len(http_server.served.requests) == n
    assert _leftovers(root.parent) == []


def test_fetch_coco2017_without_keeping_archives(tmp_path, http_server, coco_mirror):
    root = fetch.run(_coco_cfg(tmp_path, http_server.url, coco_mirror, keep_archives=False))
    assert (root / "annotations" / "instances_train2017.json").is_file()
    assert list((tmp_path / "archives").iterdir()) == []


def test_fetch_coco2017_resumes_cut_transfer(tmp_path, http_server, coco_mirror):
    http_server.served.cut_once["/zips/val2017.zip"] = 100
    root = fetch.run(_coco_cfg(tmp_path, http_server.url, coco_mirror))
    assert (root / "val2017").is_dir()
    ranges = [r["range"] for r in http_server.served.requests if r["path"] == "/zips/val2017.zip"]
    assert ranges == [None, "bytes=100-"]


def test_fetch_coco2017_wrong_md5_exits_2(tmp_path, http_server, coco_mirror, capsys):
    doc = yaml.safe_load(coco_mirror.read_text())
    doc["coco2017"]["archives"][1]["md5"] = "f" * 32
    coco_mirror.write_text(yaml.safe_dump(doc))
    root = tmp_path / "raw" / "coco2017"
    rc = _fetch_stage("coco", "data.source=real", f"paths.raw={tmp_path / 'raw'}",
                      f"fetch.archives_dir={tmp_path / 'archives'}",
                      f"fetch.mirror={http_server.url}", f"fetch.checksums={coco_mirror}",
                      "fetch.retries=0")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("error: ") and "val2017.zip" in err[-1] and "MD5" in err[-1]
    assert not root.exists() and _leftovers(root.parent) == []


@pytest.mark.parametrize("status", [404, 500])
def test_fetch_coco2017_http_error_exits_2(tmp_path, http_server, coco_mirror, capsys, status):
    http_server.served.status["/annotations/annotations_trainval2017.zip"] = status
    root = tmp_path / "raw" / "coco2017"
    rc = _fetch_stage("coco", "data.source=real", f"paths.raw={tmp_path / 'raw'}",
                      f"fetch.archives_dir={tmp_path / 'archives'}",
                      f"fetch.mirror={http_server.url}", f"fetch.checksums={coco_mirror}",
                      "fetch.retries=0")
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2
    assert f"HTTP {status}" in last and "annotations_trainval2017.zip" in last
    assert not root.exists()


def test_fetch_coco2017_unsafe_archive_leaves_nothing(tmp_path, http_server, coco_mirror,
                                                      make_zip, md5):
    members = {"val2017/a.jpg": b"x", "../escape.txt": b"x"}
    data = make_zip(tmp_path / "evil.zip", members).read_bytes()
    http_server.served.files["/zips/val2017.zip"] = data
    doc = yaml.safe_load(coco_mirror.read_text())
    doc["coco2017"]["archives"][1].update(md5=md5(data), bytes=len(data))
    coco_mirror.write_text(yaml.safe_dump(doc))
    cfg = _coco_cfg(tmp_path, http_server.url, coco_mirror)
    with pytest.raises(StageError, match=r"val2017\.zip: member '\.\./escape\.txt' contains"):
        fetch.run(cfg)
    raw = tmp_path / "raw"
    assert list(raw.iterdir()) == []  # no root, no temporary tree
    assert not (tmp_path / "escape.txt").exists() and not (raw / "escape.txt").exists()


def test_fetch_coco2017_offline_needs_archives(tmp_path, coco_mirror):
    cfg = _coco_cfg(tmp_path, None, coco_mirror, download=False)
    with pytest.raises(StageError, match=r"archives/train2017\.zip: archive not found"):
        fetch.run(cfg)


# --------------------------------------------------------------------------- synthetic via the CLI


def test_fetch_synthetic_stage_and_up_to_date(tmp_path, capsys):
    root = tmp_path / "raw" / "cityscapes"
    overrides = ["profile=smoke", f"paths.raw={tmp_path / 'raw'}",
                 "synthetic.cityscapes.num_train=2", "synthetic.cityscapes.num_val=2",
                 "+synthetic.cityscapes.seed=3"]
    assert _fetch_stage("cityscapes", *overrides) == 0
    assert capsys.readouterr().out.strip() == f"fetch: {root}"
    images = sorted((root / "leftImg8bit").rglob("*.png"))
    assert len(images) == 4
    info = json.loads((root / "fetch_info.json").read_text())
    assert info["request"]["generator"]["seed"] == 3
    assert info["request"]["generator"]["height"] == 64  # the smoke profile's size
    mtime = images[0].stat().st_mtime_ns
    assert _fetch_stage("cityscapes", *overrides) == 0
    assert images[0].stat().st_mtime_ns == mtime  # up to date: untouched
    assert _fetch_stage("cityscapes", *overrides, "fetch.force=true") == 0
    assert images[0].stat().st_mtime_ns != mtime
    assert _leftovers(root.parent) == []


def test_fetch_unknown_generator_field_exits_2(tmp_path, capsys):
    rc = _fetch_stage("cityscapes", "profile=smoke", f"paths.raw={tmp_path / 'raw'}",
                      "+synthetic.cityscapes.colour=red")
    assert rc == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "synthetic.cityscapes" in last and "colour" in last
    assert not (tmp_path / "raw").exists()


def test_fetch_settings_reach_the_request(tmp_path):
    """conf/fetch/ values (paths from the project root) reach the stage's FetchConfig."""
    cfg = stage.load_config(["experiment=table2/maskrcnn", "data.source=real",
                             "fetch.archives_dir=zips", "fetch.download=false",
                             "fetch.mirror=http://127.0.0.1:9", "fetch.retries=0"])
    request = stage.fetch_config(cfg, project_root=tmp_path)
    assert request.dataset == "coco2017" and request.root == tmp_path / "data/raw/coco2017"
    assert request.archives_dir == tmp_path / "zips" and request.checksums is None
    assert (request.download, request.mirror, request.retries) == (False, "http://127.0.0.1:9", 0)
    default = stage.fetch_config(stage.load_config(["experiment=table2/maskrcnn"]), tmp_path)
    assert default.archives_dir == tmp_path / "data/archives/coco2017"


def test_fetch_unknown_dataset():
    with pytest.raises(StageError, match="dataset 'imagenet' is not one of"):
        fetch.run(fetch.FetchConfig(dataset="imagenet"))


def test_fetch_config_is_hydra_compatible():
    """The Hydra layer will build FetchConfig from YAML: OmegaConf must accept the schema."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.merge(OmegaConf.structured(fetch.FetchConfig),
                          {"dataset": "synthetic_coco", "synthetic_coco": {"num_train": 3}})
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, fetch.FetchConfig) and obj.synthetic_coco.num_train == 3
