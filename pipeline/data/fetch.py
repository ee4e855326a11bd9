"""Stage ``fetch``: materialise a dataset root in its official layout.

Datasets:

- ``synthetic_cityscapes`` (default), ``synthetic_coco``: generated from a seed
  (:mod:`pipeline.data.synthetic`), a few seconds on a CPU.
- ``cityscapes``: ``gtFine_trainvaltest.zip`` and ``leftImg8bit_trainvaltest.zip``, taken from
  ``archives_dir`` when already there, else downloaded with cityscapesscripts' downloader. The
  login comes from ``CITYSCAPES_USERNAME``/``CITYSCAPES_PASSWORD`` or from cityscapesscripts' own
  credentials file; credentials never enter the config, the logs or any output.
- ``coco2017``: ``train2017.zip``, ``val2017.zip``, ``annotations_trainval2017.zip`` from the
  official host (or ``mirror``), resumed when cut short, checked by size and MD5.

Every archive is checked against ``pipeline/data/checksums.yaml``; extraction refuses unsafe members
and happens in ``<root>.tmp-XXXX``, renamed to ``root`` only when complete. ``root/fetch_info.json``
records what was fetched; a second run with the same request does nothing.

The stage is ``python -m pipeline.data fetch <data> [key=value …]`` (:mod:`pipeline.data.stage`),
configured by ``conf/fetch/`` and the profile's ``synthetic`` sizes.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.common.archive import extract_zip
from pipeline.common.config import to_jsonable
from pipeline.common.download import download, verify_file
from pipeline.common.errors import StageError
from pipeline.common.fs import (
    atomic_directory,
    atomic_write_json,
    is_disk_full,
    remove_leftovers,
    reporting_write_errors,
    write_error,
)
from pipeline.common.manifest import FETCH_INFO
from pipeline.config.schema import FetchSettings
from pipeline.data.synthetic import (
    SyntheticCityscapesConfig,
    SyntheticCocoConfig,
    generate_cityscapes,
    generate_coco,
)

log = logging.getLogger("pipeline.data.fetch")

DATASETS = ("synthetic_cityscapes", "synthetic_coco", "cityscapes", "coco2017")
DEFAULT_CHECKSUMS = Path(__file__).with_name("checksums.yaml")
#: bump when the synthetic rule or writers change, so stale generated roots are rebuilt
SYNTHETIC_VERSION = 1
CREDENTIAL_ENV = ("CITYSCAPES_USERNAME", "CITYSCAPES_PASSWORD")
#: what cityscapesscripts' downloader raises when the file it wrote fails the site's MD5
_DOWNLOADER_MD5_MISMATCH = "MD5 sum of downloaded file does not match"


@dataclass
class FetchConfig(FetchSettings):
    """What ``fetch`` materialises: the dataset, its root, and the stage's settings
    (:class:`~pipeline.config.schema.FetchSettings`). Paths default to ``data/raw/<dataset>``
    and ``data/archives/<dataset>`` (relative to the working directory)."""

    dataset: str = "synthetic_cityscapes"
    root: Path | None = None
    progress: bool = True
    retry_wait: float = 2.0
    synthetic_cityscapes: SyntheticCityscapesConfig = field(
        default_factory=SyntheticCityscapesConfig)
    synthetic_coco: SyntheticCocoConfig = field(default_factory=SyntheticCocoConfig)

    def resolved_root(self) -> Path:
        return Path(self.root) if self.root is not None else Path("data/raw") / self.dataset

    def resolved_archives_dir(self) -> Path:
        if self.archives_dir is not None:
            return Path(self.archives_dir).expanduser()
        return Path("data/archives") / self.dataset


# --------------------------------------------------------------------------- checksums


def load_checksums(path: str | os.PathLike, dataset: str) -> dict[str, Any]:
    """The ``dataset`` section of a checksums YAML, checked for the fields fetch needs."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StageError(f"{path}: cannot read checksums ({exc})") from None
    section = data.get(dataset) if isinstance(data, dict) else None
    if not isinstance(section, dict) or not isinstance(section.get("archives"), list):
        raise StageError(f"{path}: no '{dataset}.archives' list")
    if not isinstance(section.get("host"), str):
        raise StageError(f"{path}: no '{dataset}.host'")
    for i, entry in enumerate(section["archives"]):
        where = f"{path}: {dataset}.archives[{i}]"
        if not isinstance(entry, dict):
            raise StageError(f"{where}: expected a mapping")
        for key in ("name", "md5", "provides"):
            if key not in entry:
                raise StageError(f"{where}: missing key {key!r}")
        md5 = str(entry["md5"])
        if len(md5) != 32 or any(c not in "0123456789abcdefABCDEF" for c in md5):
            raise StageError(f"{where}.md5: {md5!r} is not an MD5 hex digest")
        if entry.get("bytes") is not None and not isinstance(entry["bytes"], int):
            raise StageError(f"{where}.bytes: expected an integer or null")
    return section


# --------------------------------------------------------------------------- real datasets


def _local_archive(path: Path, entry: dict[str, Any]) -> bool:
    """True if ``path`` holds the archive; raise if it exists but is not the published one."""
    if not path.is_file():
        return False
    problem = verify_file(path, size=entry.get("bytes"), md5=entry["md5"])
    if problem is not None:
        raise StageError(f"{path}: {problem} (published value in checksums)")
    return True


def _coco_archives(cfg: FetchConfig, section: dict[str, Any]) -> list[Path]:
    archives_dir = cfg.resolved_archives_dir()
    host = (cfg.mirror or section["host"]).rstrip("/")
    paths = []
    for entry in section["archives"]:
        dest = archives_dir / entry["name"]
        if not cfg.download:
            if not _local_archive(dest, entry):
                raise StageError(f"{dest}: archive not found (downloads are off)")
        else:
            url = f"{host}/{entry.get('path', entry['name'])}"
            log.info("fetching %s", url)
            download(url, dest, md5=entry["md5"], size=entry.get("bytes"), retries=cfg.retries,
                     retry_wait=cfg.retry_wait, timeout=cfg.timeout, progress=cfg.progress)
        paths.append(dest)
    return paths


def cityscapes_credentials_file() -> Path:
    """Where cityscapesscripts' downloader keeps its credentials (``csDownload`` offers to
    store them there)."""
    import appdirs

    return Path(appdirs.user_data_dir("cityscapesscripts", "cityscapes")) / "credentials.json"


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _cityscapes_login(host: str, timeout: float) -> tuple[Any, list[str]]:
    """A logged-in ``requests`` session and the secrets to scrub from any message.

    Environment variables win; else cityscapesscripts' own ``login()`` reads its credentials
    file. Never prompts (stages run unattended).
    """
    import requests
    from cityscapesscripts.download import downloader

    username, password = (os.environ.get(k, "") for k in CREDENTIAL_ENV)
    if username and password:
        session = requests.Session()
        url = f"{host}/login"
        try:
            session.get(url, allow_redirects=False, timeout=timeout).raise_for_status()
            response = session.post(url, data={"username": username, "password": password,
                                               "submit": "Login"},
                                    allow_redirects=False, timeout=timeout)
            response.raise_for_status()
        except requests.RequestException as exc:  # HTTP 5xx, host unreachable, timeout
            raise StageError(f"Cityscapes login at {url} failed: "
                             f"{_scrub(str(exc), [username, password])}") from None
        if response.status_code != 302:  # the site redirects after a successful login
            raise StageError(f"Cityscapes login at {url} failed: "
                             f"check {' and '.join(CREDENTIAL_ENV)}")
        return session, [username, password]
    cred_file = cityscapes_credentials_file()
    if not cred_file.is_file():
        raise StageError(
            f"Cityscapes download needs an account: set {' and '.join(CREDENTIAL_ENV)}, or store "
            f"credentials in {cred_file} (cityscapesscripts' csDownload offers to), or put the "
            f"archives in the archives directory and use --no-download")
    try:
        secrets = [str(v) for v in json.loads(cred_file.read_text()).values()]
    except (OSError, ValueError, AttributeError):
        secrets = []
    try:
        return downloader.login(), secrets
    except Exception as exc:
        raise StageError(f"Cityscapes login with {cred_file} failed: "
                         f"{_scrub(str(exc), secrets)}") from None


def _is_range_refused(exc: Exception) -> bool:
    """HTTP 416: the resumed file is already as long as the package (complete, or wrong)."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) == 416


def _download_cityscapes_package(session: Any, entry: dict[str, Any], staging: Path,
                                 secrets: Sequence[str]) -> Path:
    """Download one package into ``staging`` with cityscapesscripts (resuming a partial file)
    and check it against ``checksums.yaml``; return the staged file.

    A staged file that turns out wrong is deleted, so no later run resumes from it: that is the
    downloader's MD5 check failing, our checksum failing, or HTTP 416 (nothing left to send)
    with a file that does not verify. When the wrong file had been resumed, the package is
    downloaded once more from zero; when a download from zero is wrong, the stage fails.
    """
    from cityscapesscripts.download import downloader

    name = entry["name"]
    staged = staging / name
    while True:
        resumed = staged.is_file() and staged.stat().st_size > 0
        problem = None
        try:
            downloader.download_packages(session=session, package_names=[name],
                                         destination_path=str(staging), resume=True)
        except Exception as exc:  # the downloader raises bare Exceptions and requests errors
            if is_disk_full(exc):
                raise write_error(staged, exc, f"downloading Cityscapes {name}") from None
            if _DOWNLOADER_MD5_MISMATCH in str(exc):  # its check against the site's MD5
                problem = "MD5 differs from the one the Cityscapes site publishes"
            elif not (_is_range_refused(exc) and staged.is_file()):
                raise StageError(f"Cityscapes download of {name} failed: "
                                 f"{_scrub(str(exc), secrets)}") from None
        if problem is None:
            problem = verify_file(staged, size=entry.get("bytes"), md5=entry["md5"])
            problem = problem and f"{problem} (published value in checksums)"
        if problem is None:
            return staged
        staged.unlink(missing_ok=True)
        if not resumed:
            raise StageError(f"{staged}: {problem}; deleted, the next run downloads it again")
        log.warning("%s: %s after resuming an earlier partial download; deleted, downloading "
                    "it again from the start", staged, problem)


def _cityscapes_archives(cfg: FetchConfig, section: dict[str, Any]) -> list[Path]:
    archives_dir = cfg.resolved_archives_dir()
    staging = archives_dir / ".download"
    missing = []
    for entry in section["archives"]:
        dest = archives_dir / entry["name"]
        if _local_archive(dest, entry):
            continue
        if not cfg.download:
            raise StageError(f"{dest}: archive not found (downloads are off)")
        staged = staging / entry["name"]
        if staged.is_file() and verify_file(staged, size=entry.get("bytes"),
                                            md5=entry["md5"]) is None:
            os.replace(staged, dest)
        else:
            missing.append(entry)
    if missing:
        with reporting_write_errors(staging):
            staging.mkdir(parents=True, exist_ok=True)
        session, secrets = _cityscapes_login(section["host"].rstrip("/"), cfg.timeout)
        for entry in missing:
            log.info("downloading %s with cityscapesscripts", entry["name"])
            staged = _download_cityscapes_package(session, entry, staging, secrets)
            os.replace(staged, archives_dir / entry["name"])
    return [archives_dir / e["name"] for e in section["archives"]]


def _extract_all(archives: list[Path], section: dict[str, Any], dest: Path, progress: bool) -> None:
    for archive, entry in zip(archives, section["archives"], strict=True):
        log.info("extracting %s", archive)
        extract_zip(archive, dest, progress=progress)
        for rel in entry["provides"]:
            if not (dest / rel).exists():
                raise StageError(f"{archive}: expected {rel!r} in the archive, not found")


# --------------------------------------------------------------------------- stage


def _request(cfg: FetchConfig) -> dict[str, Any]:
    """What identifies the fetched content (never credentials or local paths)."""
    if cfg.dataset == "synthetic_cityscapes":
        return {"dataset": cfg.dataset, "generator_version": SYNTHETIC_VERSION,
                "generator": to_jsonable(cfg.synthetic_cityscapes)}
    if cfg.dataset == "synthetic_coco":
        return {"dataset": cfg.dataset, "generator_version": SYNTHETIC_VERSION,
                "generator": to_jsonable(cfg.synthetic_coco)}
    section = load_checksums(cfg.checksums or DEFAULT_CHECKSUMS, cfg.dataset)
    return {"dataset": cfg.dataset,
            "archives": [{k: e.get(k) for k in ("name", "md5", "bytes")}
                         for e in section["archives"]]}


def _read_info(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / FETCH_INFO).read_text())
    except (OSError, ValueError):
        return None


def run(cfg: FetchConfig) -> Path:
    """Materialise ``cfg.dataset`` under ``cfg.resolved_root()``; return the root.

    Raises:
        StageError: unknown dataset, missing or corrupt archive, failed download, bad checksum,
            unsafe archive member. Nothing is left under the root's name in that case (an older
            complete root stays as it was).
    """
    if cfg.dataset not in DATASETS:
        raise StageError(f"dataset {cfg.dataset!r} is not one of {', '.join(DATASETS)}")
    root = cfg.resolved_root()
    remove_leftovers(root)  # trees of an earlier run that was killed
    request = _request(cfg)
    info = _read_info(root)
    if not cfg.force and info is not None and info.get("request") == request:
        log.info("%s is up to date (%s)", root, FETCH_INFO)
        return root

    archives: list[Path] = []
    section: dict[str, Any] = {}
    if cfg.dataset in ("cityscapes", "coco2017"):
        section = load_checksums(cfg.checksums or DEFAULT_CHECKSUMS, cfg.dataset)
        get = _cityscapes_archives if cfg.dataset == "cityscapes" else _coco_archives
        archives = get(cfg, section)

    with reporting_write_errors(root, f"writing {cfg.dataset}"), atomic_directory(root) as tmp:
        if cfg.dataset == "synthetic_cityscapes":
            counts = generate_cityscapes(tmp, cfg.synthetic_cityscapes, progress=cfg.progress)
        elif cfg.dataset == "synthetic_coco":
            counts = generate_coco(tmp, cfg.synthetic_coco, progress=cfg.progress)
        else:
            _extract_all(archives, section, tmp, cfg.progress)
            counts = {}
        files = [p for p in tmp.rglob("*") if p.is_file()]
        atomic_write_json(tmp / FETCH_INFO, {
            "request": request,
            "images_per_split": counts,
            "files": len(files),
            "bytes": sum(p.stat().st_size for p in files),
        })
    if not cfg.keep_archives:
        for archive in archives:
            archive.unlink(missing_ok=True)
    log.info("wrote %s (%s)", root, cfg.dataset)
    return root


__all__ = ["DATASETS", "FetchConfig", "load_checksums", "run"]
