"""Downloads with checksums: resumable (HTTP Range on a ``.part`` file), size-capped, verified, then renamed
into place inside the data set's folder."""

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

from .catalog import CATALOG, Archive, DatasetFiles, HashAlgorithm, RemoteFile, inside
from .errors import DataError
from .registry import data_root

CHUNK_BYTES = 1 << 16
USER_AGENT = "mrvae-data/1"
#: The most bytes one download may bring when its catalog entry gives neither ``size`` nor ``max_bytes``:
#: generous (the largest catalogued file is about 180 MB) but finite, so an endless body stops.
MAX_DOWNLOAD_BYTES = 4 << 30


def size_cap(remote: RemoteFile) -> tuple[int, str]:
    """-> (the most bytes ``remote`` may have, where that number comes from): its catalog ``size``, else
    its ``max_bytes``, else ``MAX_DOWNLOAD_BYTES`` (read when called, so it can be patched)."""
    if remote.size is not None:
        return remote.size, "the file's size in the catalog"
    if remote.max_bytes is not None:
        return remote.max_bytes, "the file's max_bytes in the catalog"
    return MAX_DOWNLOAD_BYTES, "MAX_DOWNLOAD_BYTES"


def _one_line(value: object, limit: int = 200) -> str:
    """``str(value)`` on one printable line of at most ``limit`` characters (server text can hold anything)."""
    text = "".join(c if c.isprintable() else "?" for c in " ".join(str(value).split()))
    return text if len(text) <= limit else text[:limit] + "..."


def _problem(err: BaseException) -> str:
    return f"{type(err).__name__}: {_one_line(err)}"


def file_checksum(path: Path, algorithm: HashAlgorithm) -> str:
    """Hex digest of a file's bytes."""
    digest = hashlib.new(HashAlgorithm(algorithm).value)
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """GET ``url`` from byte ``offset``; None when the server says that range is empty (416)."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    except ValueError as err:
        raise DataError(f"{url}: not a URL ({_one_line(err)})") from err
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            err.close()
            return None
        err.close()
        raise DataError(f"{url}: HTTP {err.code} {_one_line(err.reason)}") from err
    except urllib.error.URLError as err:
        raise DataError(f"{url}: cannot connect ({_one_line(err.reason)})") from err
    except http.client.HTTPException as err:  # BadStatusLine, LineTooLong, too many headers, RemoteDisconnected
        raise DataError(f"{url}: malformed HTTP response ({_problem(err)})") from err
    except OSError as err:  # TimeoutError, ConnectionError and other socket errors while waiting for the response
        raise DataError(f"{url}: no response ({_problem(err)})") from err
    except ValueError as err:
        raise DataError(f"{url}: cannot request ({_problem(err)})") from err


def fetch(remote: RemoteFile, destination: Path, progress: bool = True, timeout: float = 60.0,
          resume_hint: str = "") -> str:
    """Download ``remote.url`` to ``destination`` -> the file's sha256 (hex).

    Bytes go to ``destination.part``; an existing part is resumed with an HTTP Range request (a server
    that ignores Range restarts it). A transfer that ends early keeps the part and raises ``DataError``;
    a checksum mismatch deletes the part and raises ``DataError`` with the expected and received
    digests; a match renames the part to ``destination`` (atomic on one file system).

    The whole file may have at most ``size_cap(remote)`` bytes: a Content-Length above the cap is
    refused before the body is read, a body that grows past it is cut there; both delete the part
    (its bytes are not worth resuming) and raise ``DataError`` giving the size and the cap. Network and
    protocol failures (malformed status line, over-long header, reset, timeout) raise ``DataError``
    naming the URL.
    """
    cap, origin = size_cap(remote)
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if offset > cap:  # longer than the file can be: not a prefix of it
        part.unlink()
        offset = 0
    response = _open(remote.url, offset, timeout)
    if response is not None:
        with response:
            if offset and (response.status != 206 or not _starts_at(response, offset)):
                offset = 0  # the server sent the whole file: start over
            length = response.headers.get("Content-Length")
            expected = int(length) if length is not None and length.isdigit() else None
            if expected is not None and offset + expected > cap:
                raise DataError(f"{remote.url}: the server announces {offset + expected} bytes, over the cap of "
                                f"{cap} bytes ({origin}); refused before reading{_discard(part)}")
            total = offset + expected if expected is not None else remote.size
            allowed = cap - offset
            received = 0
            overflow = 0  # bytes seen when the body went past the cap
            with open(part, "ab" if offset else "wb") as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=destination.name, disable=not progress) as bar:
                while True:
                    try:
                        block = response.read(min(CHUNK_BYTES, allowed - received + 1))
                    except (http.client.HTTPException, OSError) as err:
                        raise DataError(f"{remote.url}: transfer failed after {offset + received} bytes "
                                        f"({_problem(err)}); the partial file {part} is kept{resume_hint}") from err
                    if not block:
                        break
                    if received + len(block) > allowed:
                        overflow = offset + received + len(block)
                        break
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            if overflow:
                raise DataError(f"{remote.url}: the server sent more than the cap of {cap} bytes ({origin}); "
                                f"stopped reading at {overflow} bytes{_discard(part)}")
            if total is not None and offset + received < total:
                raise DataError(f"{remote.url}: transfer interrupted after {offset + received} of {total} "
                                f"bytes; the partial file {part} is kept{resume_hint}")
    return _verify_and_place(remote, part, destination)


def _discard(part: Path) -> str:
    """Delete ``part`` if present -> the end of the error message saying what happened to it."""
    if part.is_file():
        part.unlink()
        return f", the partial file {part} was removed"
    return ", nothing was written"


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
                try:  # a symbolic link already in the folder must not lead the file outside it
                    inside(folder, "/".join(name.parts), str(archive))
                except DataError:
                    continue
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
    ``catalog`` replaces the URL/checksum table (tests serve files from a local server). Before anything
    is written, each file's destination (and its ``.part``) is checked to resolve inside the data set's
    folder: ``DataError`` naming the data set and the file name otherwise.
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
        entry = f"{name} ({remote.url})"
        destination = inside(folder, remote.filename, entry)
        inside(folder, remote.filename + ".part", entry)
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
