"""Downloads with checksums: resumable (HTTP Range on a ``.part`` file), verified, then renamed into place."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from .catalog import CATALOG, Archive, DatasetFiles, HashAlgorithm, RemoteFile
from .errors import DataError
from .registry import data_root

CHUNK_BYTES = 1 << 16
USER_AGENT = "mrvae-data/1"


def file_checksum(path: Path, algorithm: HashAlgorithm) -> str:
    """Hex digest of a file's bytes."""
    digest = hashlib.new(HashAlgorithm(algorithm).value)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """GET ``url`` from byte ``offset``; None when the server says that range is empty (416)."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            return None
        raise DataError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise DataError(f"{url}: cannot connect ({getattr(err, 'reason', err)})") from err


def fetch(remote: RemoteFile, destination: Path, progress: bool = True, timeout: float = 60.0,
          resume_hint: str = "") -> str:
    """Download ``remote.url`` to ``destination`` -> the file's sha256 (hex).

    Bytes go to ``destination.part``; an existing part is resumed with an HTTP Range request (a server
    that ignores Range restarts it). A transfer that ends early keeps the part and raises ``DataError``;
    a checksum mismatch deletes the part and raises ``DataError`` with the expected and received
    digests; a match renames the part to ``destination`` (atomic on one file system).
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    response = _open(remote.url, offset, timeout)
    if response is not None:
        with response:
            if offset and (response.status != 206 or not _starts_at(response, offset)):
                offset = 0  # the server sent the whole file: start over
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None and length.isdigit() else None
            received = 0
            with open(part, "ab" if offset else "wb") as out, tqdm(
                    total=None if expected is None else offset + expected, initial=offset, unit="B",
                    unit_scale=True, unit_divisor=1024, desc=destination.name, disable=not progress) as bar:
                while True:
                    try:
                        block = response.read(CHUNK_BYTES)
                    except (http.client.HTTPException, OSError) as err:
                        raise DataError(f"{remote.url}: transfer failed after {offset + received} bytes ({err}); "
                                        f"the partial file {part} is kept{resume_hint}") from err
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            if expected is not None and received < expected:
                raise DataError(f"{remote.url}: transfer interrupted after {offset + received} of {offset + expected} "
                                f"bytes; the partial file {part} is kept{resume_hint}")
    return _verify_and_place(remote, part, destination)


def _starts_at(response: http.client.HTTPResponse, offset: int) -> bool:
    content_range = response.headers.get("Content-Range", "")
    return content_range.startswith(f"bytes {offset}-")


def _verify_and_place(remote: RemoteFile, part: Path, destination: Path) -> str:
    sha256 = file_checksum(part, HashAlgorithm.SHA256)
    if remote.checksum is not None:
        algorithm = HashAlgorithm(remote.algorithm)
        got = sha256 if algorithm is HashAlgorithm.SHA256 else file_checksum(part, algorithm)
        if got.lower() != remote.checksum.lower():
            part.unlink()
            raise DataError(f"{destination.name}: {algorithm.value} checksum mismatch: expected "
                            f"{remote.checksum}, got {got}; the partial file {part} was removed")
    os.replace(part, destination)
    return sha256


def extract_tar(archive: Path, folder: Path, prefix: str) -> list[Path]:
    """Extract the regular files under ``prefix`` of a (gzipped) tar into ``folder`` -> their paths.
    Members with absolute paths, ``..`` or links are skipped; each file is written then renamed."""
    written = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = PurePosixPath(member.name)
                if (not member.isfile() or name.is_absolute() or ".." in name.parts
                        or not member.name.startswith(prefix)):
                    continue
                target = folder.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                temporary = target.with_name(target.name + ".part")
                source = tar.extractfile(member)
                with source, open(temporary, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.replace(temporary, target)
                written.append(target)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise DataError(f"{archive}: cannot extract ({err})") from err
    if not written:
        raise DataError(f"{archive}: holds no files under {prefix!r}")
    return written


def download_dataset(name: str, root: str | Path | None = None, progress: bool = True,
                     catalog: Mapping[str, DatasetFiles] | None = None, timeout: float = 60.0) -> list[str]:
    """Fetch data set ``name`` into ``data_root(root)/<folder>`` -> one line per file saying what happened.

    Files already present are kept; archives are extracted when the reader's files are missing.
    ``catalog`` replaces the URL/checksum table (tests serve files from a local server).
    """
    table = CATALOG if catalog is None else catalog
    if name not in table:
        raise ValueError(f"no files to download for {name!r}; choose one of: {', '.join(sorted(table))}")
    files = table[name]
    if not files.remote:
        raise DataError(f"{name}: no canonical download; {files.manual}")
    folder = files.primary(data_root(root))
    hint = f"; run `mrvae data download {name}` again to resume"
    report = []
    for remote in files.remote:
        destination = folder / remote.filename
        if destination.is_file():
            report.append(f"{destination}: already present")
        else:
            sha256 = fetch(remote, destination, progress, timeout, resume_hint=hint)
            source = "" if remote.checksum_source == "published" else f", checksum {remote.checksum_source}"
            verified = (f"{HashAlgorithm(remote.algorithm).value} verified{source}" if remote.checksum is not None
                        else f"unverified: no published checksum; sha256 {sha256}")
            report.append(f"{destination}: downloaded ({verified})")
        if remote.archive is Archive.TAR_GZ and not files.complete_in(folder):
            written = extract_tar(destination, folder, remote.extract_prefix)
            report.append(f"{destination}: extracted {len(written)} files into {folder}")
    return report
