"""Downloads against a loopback HTTP server with Range support: success, checksum mismatch, resume, extraction."""

import hashlib
import io
import re
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mrvae.cli import data_command
from mrvae.data import DataError
from mrvae.data.catalog import CATALOG, Archive, DatasetFiles, HashAlgorithm, RemoteFile, Required
from mrvae.data.check import check_dataset, list_datasets
from mrvae.data.download import download_dataset

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` (206) unless ``server.ignore_range``;
    ``server.cut[path] = k`` sends only k bytes of the next response to ``path`` and closes."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404, "not found")
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and not server.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        cut = server.cut.pop(self.path, None)
        self.wfile.write(payload if cut is None else payload[:cut])
        self.wfile.flush()

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.files, httpd.cut, httpd.requests, httpd.ignore_range = {}, {}, [], False
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def toy_catalog(server, checksum=None, algorithm=HashAlgorithm.SHA256, files=("a.bin",)) -> dict:
    remote = []
    for name in files:
        server.files[f"/{name}"] = PAYLOAD
        digest = checksum if checksum is not None else hashlib.new(algorithm.value, PAYLOAD).hexdigest()
        remote.append(RemoteFile(f"{server.url}/{name}", name, digest, algorithm))
    return {"toy": DatasetFiles("toy", "toy", tuple(Required((n,)) for n in files), tuple(remote))}


def test_download_success_then_already_present(server, tmp_path):
    catalog = toy_catalog(server, files=("a.bin", "b.bin"))
    catalog["toy"] = DatasetFiles("toy", "toy", catalog["toy"].required, (
        catalog["toy"].remote[0],
        RemoteFile(f"{server.url}/b.bin", "b.bin", hashlib.md5(PAYLOAD).hexdigest(), HashAlgorithm.MD5)))
    report = download_dataset("toy", tmp_path, progress=True, catalog=catalog)
    assert report == [f"{tmp_path / 'toy' / 'a.bin'}: downloaded (sha256 verified)",
                      f"{tmp_path / 'toy' / 'b.bin'}: downloaded (md5 verified)"]
    assert (tmp_path / "toy" / "a.bin").read_bytes() == PAYLOAD == (tmp_path / "toy" / "b.bin").read_bytes()
    assert not list((tmp_path / "toy").glob("*.part"))
    assert server.requests == [("/a.bin", None), ("/b.bin", None)]
    again = download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert again == [f"{tmp_path / 'toy' / n}: already present" for n in ("a.bin", "b.bin")]
    assert len(server.requests) == 2
    ok, report = check_dataset("toy", tmp_path, catalog)
    assert ok and f"  present  {tmp_path / 'toy' / 'b.bin'}" in report.splitlines()


def test_unverified_download_reports_its_sha256(server, tmp_path):
    catalog = toy_catalog(server)
    catalog["toy"] = DatasetFiles("toy", "toy", catalog["toy"].required,
                                  (RemoteFile(f"{server.url}/a.bin", "a.bin", None),))
    report = download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert report == [f"{tmp_path / 'toy' / 'a.bin'}: downloaded (unverified: no published checksum; sha256 "
                      f"{hashlib.sha256(PAYLOAD).hexdigest()})"]


def test_checksum_mismatch_removes_the_partial_file(server, tmp_path):
    catalog = toy_catalog(server, checksum="0" * 64)
    got = hashlib.sha256(PAYLOAD).hexdigest()
    part = tmp_path / "toy" / "a.bin.part"
    with pytest.raises(DataError, match=f"^a.bin: sha256 checksum mismatch: expected {'0' * 64}, got {got}; "
                                        f"the partial file {re.escape(str(part))} was removed$"):
        download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert not part.exists() and not (tmp_path / "toy" / "a.bin").exists()


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    catalog = toy_catalog(server)
    server.cut["/a.bin"] = 3_000
    part = tmp_path / "toy" / "a.bin.part"
    with pytest.raises(DataError, match=rf"a.bin: transfer interrupted after 3000 of 10240 bytes; the partial file "
                                        rf"{re.escape(str(part))} is kept; run `mrvae data download toy` again"):
        download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert part.read_bytes() == PAYLOAD[:3_000]
    download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert server.requests == [("/a.bin", None), ("/a.bin", "bytes=3000-")]
    assert (tmp_path / "toy" / "a.bin").read_bytes() == PAYLOAD and not part.exists()


def test_resume_when_the_server_ignores_range_or_the_part_is_complete(server, tmp_path):
    catalog = toy_catalog(server)
    part = tmp_path / "toy" / "a.bin.part"
    part.parent.mkdir()
    part.write_bytes(b"stale bytes")
    server.ignore_range = True  # answers 200 with the whole file: the part must be restarted, not appended to
    download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert (tmp_path / "toy" / "a.bin").read_bytes() == PAYLOAD
    (tmp_path / "toy" / "a.bin").rename(part)  # a complete part left behind: the server answers 416
    server.ignore_range = False
    download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert server.requests[-1] == ("/a.bin", f"bytes={len(PAYLOAD)}-")
    assert (tmp_path / "toy" / "a.bin").read_bytes() == PAYLOAD


def test_http_error_and_unreachable_server_name_the_url(server, tmp_path):
    catalog = toy_catalog(server)
    del server.files["/a.bin"]
    with pytest.raises(DataError, match=rf"^{re.escape(server.url)}/a.bin: HTTP 404"):
        download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    closed = {"toy": DatasetFiles("toy", "toy", (Required(("a.bin",)),),
                                  (RemoteFile("http://127.0.0.1:9/a.bin", "a.bin", None),))}
    with pytest.raises(DataError, match=r"^http://127.0.0.1:9/a.bin: cannot connect"):
        download_dataset("toy", tmp_path, progress=False, catalog=closed, timeout=5)


def test_tar_archive_is_extracted_safely(server, tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("cifar-10-batches-py/data_batch_1", b"one"), ("cifar-10-batches-py/readme", b"hi"),
                           ("cifar-10-batches-py/../../escape", b"evil"), ("other/file", b"no")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("cifar-10-batches-py/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    archive = buffer.getvalue()
    server.files["/c.tar.gz"] = archive
    catalog = {"arch": DatasetFiles("arch", "arch", (Required(("cifar-10-batches-py/data_batch_1",)),), (
        RemoteFile(f"{server.url}/c.tar.gz", "c.tar.gz", hashlib.md5(archive).hexdigest(), archive=Archive.TAR_GZ,
                   extract_prefix="cifar-10-batches-py/"),))}
    report = download_dataset("arch", tmp_path, progress=False, catalog=catalog)
    folder = tmp_path / "arch"
    assert report[-1] == f"{folder / 'c.tar.gz'}: extracted 2 files into {folder}"
    assert (folder / "cifar-10-batches-py" / "data_batch_1").read_bytes() == b"one"
    assert sorted(p.name for p in (folder / "cifar-10-batches-py").iterdir()) == ["data_batch_1", "readme"]
    assert not (tmp_path / "escape").exists() and not (folder / "other").exists()
    (folder / "c.tar.gz").write_bytes(archive[:40])
    (folder / "cifar-10-batches-py" / "data_batch_1").unlink()
    with pytest.raises(DataError, match=r"c.tar.gz: cannot extract"):
        download_dataset("arch", tmp_path, progress=False, catalog=catalog)


def test_sets_without_a_canonical_url_explain_manual_placement(tmp_path):
    with pytest.raises(DataError, match=r"^text: no canonical download; .*train.txt, valid.txt and test.txt"):
        download_dataset("text", tmp_path)
    with pytest.raises(DataError, match=r"^celeba: no canonical download; .*img_align_celeba"):
        data_command.download_dataset("celeba", tmp_path)
    with pytest.raises(ValueError, match="no files to download for 'digits'"):
        download_dataset("digits", tmp_path)


def test_catalog_checksums_are_well_formed():
    for files in CATALOG.values():
        for remote in files.remote:
            assert remote.url.startswith(("http://", "https://")) and "/" not in remote.filename
            if remote.checksum is not None:
                length = {HashAlgorithm.MD5: 32, HashAlgorithm.SHA256: 64}[remote.algorithm]
                assert re.fullmatch(f"[0-9a-f]{{{length}}}", remote.checksum), remote.url


def test_check_and_list_report_exact_paths(tmp_path):
    ok, report = data_command.check_dataset("svhn", tmp_path)
    assert not ok
    assert f"  missing  {tmp_path / 'svhn' / 'train_32x32.mat'}" in report.splitlines()
    assert report.splitlines()[-1] == "svhn: incomplete; run `mrvae data download svhn`"
    (tmp_path / "svhn").mkdir()
    for name in ("train_32x32.mat", "test_32x32.mat"):
        (tmp_path / "svhn" / name).write_bytes(b"x")
    ok, report = data_command.check_dataset("svhn", tmp_path)
    assert ok and f"  present  {tmp_path / 'svhn' / 'test_32x32.mat'}" in report.splitlines()
    ok, report = data_command.check_dataset("mnist", tmp_path)
    assert f"  missing  {tmp_path / 'mnist' / 'train-images-idx3-ubyte'} or " \
           f"{tmp_path / 'mnist' / 'train-images-idx3-ubyte.gz'}" in report.splitlines()
    assert data_command.check_dataset("digits", tmp_path) == (True, "digits: built in, needs no files")
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        check_dataset("nope", tmp_path)
    table = data_command.list_datasets(tmp_path).splitlines()
    assert table[0] == f"data root: {tmp_path}"
    rows = {re.split(r"\s{2,}", line)[0]: re.split(r"\s{2,}", line)[1] for line in table[2:]}
    assert rows["svhn"] == "present" and rows["mnist"] == "missing" and rows["digits"] == "built in"
    assert rows["dsprites-like"] == "built in" and list_datasets(tmp_path) == "\n".join(table)
