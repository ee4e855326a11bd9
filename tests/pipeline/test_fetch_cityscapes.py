"""fetch ``cityscapes``: archives already downloaded, and cityscapesscripts' downloader run against
a local imitation of the Cityscapes site (requests are redirected to 127.0.0.1). Credentials must
reach the login form and nothing else: not stdout/stderr, logs, files, errors or the config."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
import urllib.parse
from pathlib import Path

import pytest
import requests
import yaml

from pipeline.common.config import to_jsonable
from pipeline.common.errors import StageError, run_stage
from pipeline.data import fetch, stage
from pipeline.data.synthetic import SyntheticCityscapesConfig, generate_cityscapes

SITE = "https://www.cityscapes-dataset.com"
USER, PASSWORD = "alice@example.org", "s3cr3t-Pa55-w0rd"
PACKAGES = {"gtFine_trainvaltest.zip": "1", "leftImg8bit_trainvaltest.zip": "3"}


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # cityscapesscripts' cred file
    for key in fetch.CREDENTIAL_ENV:
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def archives(tmp_path, zip_tree, md5) -> tuple[dict[str, bytes], Path]:
    """The two official archive names holding a tiny synthetic Cityscapes, and a checksums file."""
    src = tmp_path / "src"
    generate_cityscapes(src, SyntheticCityscapesConfig(height=64, width=128, num_train=2, num_val=2,
                                                       extra_gt_files=False), progress=False)
    data = {
        "gtFine_trainvaltest.zip": zip_tree(tmp_path / "z" / "gt.zip", src, "gtFine").read_bytes(),
        "leftImg8bit_trainvaltest.zip":
            zip_tree(tmp_path / "z" / "img.zip", src, "leftImg8bit").read_bytes(),
    }
    checksums = tmp_path / "checksums.yaml"
    checksums.write_text(yaml.safe_dump({"cityscapes": {"host": SITE, "archives": [
        {"name": name, "md5": md5(blob), "bytes": None, "provides": [name.split("_")[0]]}
        for name, blob in data.items()]}}))
    return data, checksums


def _cfg(tmp_path: Path, checksums: Path, **kw) -> fetch.FetchConfig:
    return fetch.FetchConfig(dataset="cityscapes", root=tmp_path / "raw" / "cityscapes",
                             archives_dir=tmp_path / "downloads", checksums=checksums,
                             progress=False, **kw)


def _check_layout(root: Path) -> None:
    assert len(list((root / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"))) == 2
    assert len(list((root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))) == 2


def test_from_archives_already_downloaded(tmp_path, archives):
    data, checksums = archives
    for name, blob in data.items():
        (tmp_path / "downloads").mkdir(exist_ok=True)
        (tmp_path / "downloads" / name).write_bytes(blob)
    root = fetch.run(_cfg(tmp_path, checksums, download=False))
    _check_layout(root)
    info = json.loads((root / "fetch_info.json").read_text())
    assert {a["name"] for a in info["request"]["archives"]} == set(PACKAGES)


def test_archive_missing_offline(tmp_path, archives):
    with pytest.raises(StageError, match=r"downloads/gtFine_trainvaltest\.zip: archive not found"):
        fetch.run(_cfg(tmp_path, archives[1], download=False))
    assert not (tmp_path / "raw").exists() or list((tmp_path / "raw").iterdir()) == []


def test_local_archive_with_wrong_md5(tmp_path, archives):
    data, checksums = archives
    (tmp_path / "downloads").mkdir()
    for name, blob in data.items():
        (tmp_path / "downloads" / name).write_bytes(blob + b"tampered")
    with pytest.raises(StageError, match=r"gtFine_trainvaltest\.zip: MD5 is \w{32}, expected"):
        fetch.run(_cfg(tmp_path, checksums, download=False))


# --------------------------------------------------------------------------- download mode


@pytest.fixture
def site(http_server, archives, monkeypatch, md5):
    """Serve the endpoints cityscapesscripts' downloader uses; route the site's URL to it."""
    data, _ = archives
    served = http_server.served

    def login_form(handler, body):
        handler.send_response(200)
        handler.end_headers()

    def login(handler, body):
        form = urllib.parse.parse_qs(body.decode())
        ok = form.get("username") == [USER] and form.get("password") == [PASSWORD]
        handler.send_response(302 if ok else 200)
        handler.send_header("Location", "/")
        handler.end_headers()

    def package_list(handler, body):
        text = json.dumps([{"name": n, "packageID": pid, "size": "1KB", "thirdparty": "0"}
                           for n, pid in PACKAGES.items()]).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(text)))
        handler.end_headers()
        handler.wfile.write(text)

    served.handlers[("GET", "/login")] = login_form
    served.handlers[("POST", "/login")] = login
    served.handlers[("GET", "/downloads/?list")] = package_list
    for name, pid in PACKAGES.items():
        served.files[f"/md5-sum/?packageID={pid}"] = f"{md5(data[name])}  {name}\n".encode()
        served.files[f"/file-handling/?packageID={pid}"] = data[name]

    base = requests.Session

    class ToLocalSite(base):
        def request(self, method, url, *args, **kwargs):
            return super().request(method, url.replace(SITE, http_server.url), *args, **kwargs)

    monkeypatch.setattr(requests, "Session", ToLocalSite)
    return served


def _assert_no_secret(tmp_path: Path, *texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
    for path in tmp_path.rglob("*"):
        if path.is_file() and "xdg" not in path.parts:
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_download_with_env_credentials(tmp_path, archives, site, monkeypatch, capsys, caplog):
    monkeypatch.setenv("CITYSCAPES_USERNAME", USER)
    monkeypatch.setenv("CITYSCAPES_PASSWORD", PASSWORD)
    caplog.set_level(logging.DEBUG)
    cfg = _cfg(tmp_path, archives[1])
    root = fetch.run(cfg)
    _check_layout(root)
    posts = [r for r in site.requests if r["method"] == "POST"]
    assert len(posts) == 1 and PASSWORD.encode() in posts[0]["body"]  # the login used them
    assert (tmp_path / "downloads" / "gtFine_trainvaltest.zip").is_file()
    assert not any((tmp_path / "downloads" / ".download").iterdir())  # staging emptied
    out = capsys.readouterr()
    _assert_no_secret(tmp_path, out.out, out.err, caplog.text, repr(cfg),
                      json.dumps(to_jsonable(cfg)))


def test_download_with_cityscapesscripts_credentials_file(tmp_path, archives, site):
    cred = fetch.cityscapes_credentials_file()
    assert str(cred).startswith(str(tmp_path / "xdg"))
    cred.parent.mkdir(parents=True)
    cred.write_text(json.dumps({"username": USER, "password": PASSWORD}))
    root = fetch.run(_cfg(tmp_path, archives[1]))
    _check_layout(root)
    assert PASSWORD.encode() in next(r for r in site.requests if r["method"] == "POST")["body"]


def _fetch_main(tmp_path: Path, checksums: Path) -> int:
    """``python -m pipeline.data fetch cityscapes`` of the real data, in this process."""
    return run_stage(stage.main, [
        "fetch", "cityscapes", "data.source=real", f"paths.raw={tmp_path / 'raw'}",
        f"fetch.archives_dir={tmp_path / 'downloads'}", f"fetch.checksums={checksums}"])


def test_bad_credentials(tmp_path, archives, site, monkeypatch, capsys):
    monkeypatch.setenv("CITYSCAPES_USERNAME", USER)
    monkeypatch.setenv("CITYSCAPES_PASSWORD", "wrong-" + PASSWORD)
    rc = _fetch_main(tmp_path, archives[1])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Cityscapes login" in err and "failed" in err
    assert "wrong-" + PASSWORD not in err
    assert not (tmp_path / "raw" / "cityscapes").exists()


def test_no_credentials_anywhere(tmp_path, archives, site):
    with pytest.raises(StageError, match="CITYSCAPES_USERNAME and CITYSCAPES_PASSWORD"):
        fetch.run(_cfg(tmp_path, archives[1]))
    assert not [r for r in site.requests if r["method"] == "POST"]


def test_downloader_error_is_scrubbed(tmp_path, archives, site, monkeypatch, capsys):
    """An error whose text holds the password (here: a reason phrase echoing it) is reported
    without it."""
    monkeypatch.setenv("CITYSCAPES_USERNAME", USER)
    monkeypatch.setenv("CITYSCAPES_PASSWORD", PASSWORD)

    def md5_fails(handler, body):
        handler.send_response(500, f"backend echoed {PASSWORD}")
        handler.end_headers()

    site.handlers[("GET", "/md5-sum/?packageID=1")] = md5_fails
    with pytest.raises(StageError) as info:
        fetch.run(_cfg(tmp_path, archives[1]))
    message = str(info.value)
    assert "500" in message and "***" in message
    out = capsys.readouterr()
    _assert_no_secret(tmp_path, message, out.out, out.err)


def test_wrong_md5_after_download(tmp_path, archives, site, monkeypatch, md5):
    """The file the site sends must also match the checksums file, not only the site's MD5."""
    monkeypatch.setenv("CITYSCAPES_USERNAME", USER)
    monkeypatch.setenv("CITYSCAPES_PASSWORD", PASSWORD)
    doc = yaml.safe_load(archives[1].read_text())
    doc["cityscapes"]["archives"][0]["md5"] = "0" * 32
    archives[1].write_text(yaml.safe_dump(doc))
    with pytest.raises(StageError, match=r"gtFine_trainvaltest\.zip: MD5 is .*deleted"):
        fetch.run(_cfg(tmp_path, archives[1]))
    assert not (tmp_path / "downloads" / "gtFine_trainvaltest.zip").exists()
    assert not (tmp_path / "raw" / "cityscapes").exists()


def test_config_has_no_credential_fields():
    names = {f.name.lower() for f in dataclasses.fields(fetch.FetchConfig)}
    assert not names & {"username", "password", "user", "token", "credentials"}


# --------------------------------------------------------------------------- recovery (issue 10)


def _gt_ranges(site) -> list[str | None]:
    return [r["range"] for r in site.requests if r["path"] == "/file-handling/?packageID=1"]


def test_corrupt_transfer_is_deleted_and_next_run_starts_clean(tmp_path, archives, site,
                                                                monkeypatch, capsys):
    """One corrupted transfer (the site's MD5 does not match what arrived) must not leave a
    staged file that every later run resumes from (HTTP 416 forever)."""
    monkeypatch.setenv("CITYSCAPES_USERNAME", USER)
    monkeypatch.setenv("CITYSCAPES_PASSWORD", PASSWORD)
    data, checksums = archives
    good = data["gtFine_trainvaltest.zip"]
    site.files["/file-handling/?packageID=1"] = bytes(b ^ 0xFF for b in good)  # same length
    assert _fetch_main(tmp_path, checksums) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "gtFine_trainvaltest.zip" in err[0] and "MD5" in err[0], err
    assert not (tmp_path / "downloads" / ".download" / "gtFine_trainvaltest.zip").exists()
    site.files["/file-handling/?packageID=1"] = good  # the next transfer is fine
    assert _fetch_main(tmp_path, checksums) == 0
    _check_layout(tmp_path / "raw" / "cityscapes")
    assert _gt_ranges(site)[-1] == "bytes=0-"  # started from zero, not resumed


@pytest.mark.parametrize("staged_bytes", ["complete", "partial"])
def test_wrong_staged_file_is_downloaded_again(tmp_path, archives, site, monkeypatch,
                                               staged_bytes):
    """A staged file left by an earlier run that is wrong: as long as the package (the resume
    request gets HTTP 416) or shorter (the resumed file fails the MD5 check). Either way it is
    deleted and the package downloaded again from zero, in the same run."""
    monkeypatch.setenv("CITYSCAPES_USERNAME", USER)
    monkeypatch.setenv("CITYSCAPES_PASSWORD", PASSWORD)
    data, checksums = archives
    size = len(data["gtFine_trainvaltest.zip"])
    staged = tmp_path / "downloads" / ".download" / "gtFine_trainvaltest.zip"
    staged.parent.mkdir(parents=True)
    staged.write_bytes(b"x" * (size if staged_bytes == "complete" else 100))
    root = fetch.run(_cfg(tmp_path, checksums))
    _check_layout(root)
    resumed_from = size if staged_bytes == "complete" else 100
    assert _gt_ranges(site) == [f"bytes={resumed_from}-", "bytes=0-"]
    assert (tmp_path / "downloads" / "gtFine_trainvaltest.zip").read_bytes() == \
        data["gtFine_trainvaltest.zip"]


@pytest.mark.parametrize("failure", ["http_500", "unreachable"])
def test_login_failure_is_one_line(tmp_path, archives, site, monkeypatch, capsys, failure):
    monkeypatch.setenv("CITYSCAPES_USERNAME", USER)
    monkeypatch.setenv("CITYSCAPES_PASSWORD", PASSWORD)
    checksums = archives[1]
    if failure == "http_500":
        site.status["/login"] = 500
        del site.handlers[("GET", "/login")]
        host = SITE
    else:  # a port nobody listens on
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            host = f"http://127.0.0.1:{s.getsockname()[1]}"
        doc = yaml.safe_load(checksums.read_text())
        doc["cityscapes"]["host"] = host
        checksums.write_text(yaml.safe_dump(doc))
    assert _fetch_main(tmp_path, checksums) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("error:")]) == 1
    assert err[-1].startswith(f"error: Cityscapes login at {host}/login failed: ")
    assert ("500" in err[-1]) if failure == "http_500" else ("refused" in err[-1].lower())
    assert PASSWORD not in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "raw" / "cityscapes").exists()
