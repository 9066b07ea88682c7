"""Downloads against a loopback HTTP server with Range support: success, checksum mismatch, resume, extraction;
and what a hostile catalog or server cannot do: write outside the data folder, send an endless body, or
turn a malformed response into a traceback."""

import hashlib
import io
import os
import re
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mrvae.cli import data_command, main
import mrvae.data.download as download_module
from mrvae.data import DataError
from mrvae.data.catalog import CATALOG, Archive, DatasetFiles, HashAlgorithm, RemoteFile, Required
from mrvae.data.check import check_dataset, list_datasets
from mrvae.data.download import download_dataset

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes


class RangeHandler(BaseHTTPRequestHandler):
    """Serves ``server.files``; honours ``Range: bytes=N-`` (206) unless ``server.ignore_range``;
    ``server.cut[path] = k`` sends only k bytes of the next response to ``path`` and closes.
    Misbehaviours: ``server.raw[path]`` is sent as the whole response (status line and headers included);
    ``server.lie[path] = (declared, body)`` answers 200 with ``Content-Length: declared`` (none when None,
    so the body runs until the connection closes) and then sends ``body``; ``server.stall`` holds every
    answer back for that many seconds."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if server.stall:
            time.sleep(server.stall)
            return
        if self.path in server.raw:
            self._send_raw(server.raw[self.path])
            return
        if self.path in server.lie:
            declared, payload = server.lie[self.path]
            self.send_response(200)
            if declared is not None:
                self.send_header("Content-Length", str(declared))
            self.end_headers()
            self._send_raw(payload)
            return
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

    def _send_raw(self, data: bytes) -> None:
        self.close_connection = True
        try:  # the client may hang up first (it stops at a cap or a bad line): that is the point
            for start in range(0, len(data), 1 << 16):
                self.wfile.write(data[start:start + (1 << 16)])
            self.wfile.flush()
        except OSError:
            pass

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    httpd.files, httpd.cut, httpd.requests, httpd.ignore_range = {}, {}, [], False
    httpd.raw, httpd.lie, httpd.stall = {}, {}, 0.0
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


# --- file names: a catalog entry cannot write outside its data set's folder ---------------------------------

BAD_NAMES = [
    ("../x", "contains '..'"),
    ("a/../../x", "contains '..'"),
    ("/tmp/mrvae-escape", "is an absolute path"),
    ("C:x", "starts with a drive (as 'C:')"),
    ("", "is empty"),
    (".", "is not a plain relative path"),
    ("./a", "is not a plain relative path"),
    ("a//b", "is not a plain relative path"),
    ("a\\b", "contains a backslash"),
    ("a\nb", "contains a control character"),
]


@pytest.mark.parametrize("name,problem", BAD_NAMES)
def test_remote_file_with_a_bad_name_cannot_be_built(name, problem):
    url = "http://127.0.0.1:9/a.bin"
    with pytest.raises(DataError) as caught:
        RemoteFile(url, name, None)
    message = str(caught.value)
    assert re.match(rf"^{re.escape(url)}: file name {re.escape(repr(name))} {re.escape(problem)}", message)
    assert "\n" not in message and message.endswith("catalog names must be relative paths inside the "
                                                     "data set's folder")


def test_entries_with_a_bad_folder_or_path_cannot_be_built(tmp_path):
    with pytest.raises(DataError, match=r"^toy: folder '\.\./up' contains '\.\.'"):
        DatasetFiles("toy", "../up", (Required(("a.bin",)),))
    with pytest.raises(DataError, match=rf"^toy: folder {re.escape(repr(str(tmp_path)))} is an absolute path"):
        DatasetFiles("toy", str(tmp_path), (Required(("a.bin",)),))
    with pytest.raises(DataError, match=r"^required file: path '\.\./x' contains '\.\.'"):
        Required(("a.bin", "../x"))
    remote = RemoteFile("http://127.0.0.1:9/a.bin", "a.bin", None)
    object.__setattr__(remote, "filename", "../x")  # slipped past RemoteFile's own check
    with pytest.raises(DataError, match=r"^toy \(http://127.0.0.1:9/a.bin\): file name '\.\./x' contains '\.\.'"):
        DatasetFiles("toy", "toy", (Required(("a.bin",)),), (remote,))


def sneak(server, filename: str) -> dict:
    """A catalog whose one file name was changed to ``filename`` after every constructor check."""
    catalog = toy_catalog(server)
    object.__setattr__(catalog["toy"].remote[0], "filename", filename)
    return catalog


@pytest.mark.parametrize("kind", ["dotdot", "absolute"])
def test_download_refuses_a_name_outside_the_folder_before_writing(server, tmp_path, kind):
    outside = tmp_path / "outside.bin"
    filename = "../../outside.bin" if kind == "dotdot" else str(outside)
    root = tmp_path / "root"
    problem = "contains '..'" if kind == "dotdot" else "is an absolute path"
    with pytest.raises(DataError, match=rf"^toy \({re.escape(server.url)}/a.bin\): file name "
                                        rf"{re.escape(repr(filename))} {problem}; catalog names must"):
        download_dataset("toy", root, progress=False, catalog=sneak(server, filename))
    assert server.requests == [] and not outside.exists() and not (tmp_path / "outside.bin.part").exists()


def test_download_refuses_a_name_that_resolves_outside_through_a_link(server, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder = tmp_path / "root" / "toy"
    folder.mkdir(parents=True)
    (folder / "sub").symlink_to(elsewhere)
    catalog = toy_catalog(server)
    catalog["toy"] = DatasetFiles("toy", "toy", (Required(("sub/a.bin",)),),
                                  (RemoteFile(f"{server.url}/a.bin", "sub/a.bin", None),))
    with pytest.raises(DataError, match=rf"^toy \({re.escape(server.url)}/a.bin\): file name 'sub/a.bin' resolves "
                                        rf"to {re.escape(str(elsewhere / 'a.bin'))}, outside the data set's folder "
                                        rf"{re.escape(str(folder))}; refused$"):
        download_dataset("toy", tmp_path / "root", progress=False, catalog=catalog)
    assert server.requests == [] and list(elsewhere.iterdir()) == []


def test_catalog_names_and_sizes_are_valid():
    for files in CATALOG.values():
        DatasetFiles(files.name, files.folder, files.required, files.remote, files.manual, files.fallbacks)
        for remote in files.remote:
            assert remote.size is None or (isinstance(remote.size, int) and remote.size > 0)
    assert CATALOG["cifar10"].remote[0].size == 170_498_071
    assert download_module.MAX_DOWNLOAD_BYTES == 4 << 30


# --- size caps: a server cannot fill the disk -------------------------------------------------------------

def test_content_length_over_the_global_cap_is_refused_before_reading(server, tmp_path):
    catalog = toy_catalog(server)
    server.lie["/a.bin"] = (10**12, b"x" * 100)
    with pytest.raises(DataError, match=rf"^{re.escape(server.url)}/a.bin: the server announces 1000000000000 bytes, "
                                        rf"over the cap of 4294967296 bytes \(MAX_DOWNLOAD_BYTES\); refused before "
                                        rf"reading, nothing was written$"):
        download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert list((tmp_path / "toy").iterdir()) == []


def test_more_than_the_catalog_size_is_refused_and_the_part_removed(server, tmp_path):
    url = f"{server.url}/a.bin"
    server.files["/a.bin"] = PAYLOAD
    catalog = {"toy": DatasetFiles("toy", "toy", (Required(("a.bin",)),),
                                   (RemoteFile(url, "a.bin", None, size=len(PAYLOAD)),))}
    part = tmp_path / "toy" / "a.bin.part"
    server.cut["/a.bin"] = 3_000
    with pytest.raises(DataError, match="transfer interrupted after 3000 of 10240 bytes"):
        download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert part.stat().st_size == 3_000
    server.files["/a.bin"] = PAYLOAD + b"more"  # the resumed answer announces 10244 bytes in all
    with pytest.raises(DataError, match=rf"^{re.escape(url)}: the server announces 10244 bytes, over the cap of "
                                        rf"10240 bytes \(the file's size in the catalog\); refused before reading, "
                                        rf"the partial file {re.escape(str(part))} was removed$"):
        download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert server.requests[-1] == ("/a.bin", "bytes=3000-") and not part.exists()
    server.lie["/a.bin"] = (None, PAYLOAD[:100])  # no Content-Length and short: the catalog size says so
    with pytest.raises(DataError, match=rf"^{re.escape(url)}: transfer interrupted after 100 of 10240 bytes; "
                                        rf"the partial file {re.escape(str(part))} is kept"):
        download_dataset("toy", tmp_path, progress=False, catalog=catalog)


@pytest.mark.parametrize("how", ["global", "max_bytes", "size"])
def test_an_endless_body_stops_at_the_cap(server, tmp_path, monkeypatch, how):
    url = f"{server.url}/a.bin"
    server.lie["/a.bin"] = (None, b"x" * (8 << 20))  # no Content-Length: the body runs until the server closes
    if how == "global":
        monkeypatch.setattr(download_module, "MAX_DOWNLOAD_BYTES", 4_096)
        remote, cap, origin = RemoteFile(url, "a.bin", None), 4_096, "MAX_DOWNLOAD_BYTES"
    elif how == "max_bytes":
        remote, cap = RemoteFile(url, "a.bin", None, max_bytes=1_000), 1_000
        origin = "the file's max_bytes in the catalog"
    else:
        remote, cap, origin = RemoteFile(url, "a.bin", None, size=5_000), 5_000, "the file's size in the catalog"
    catalog = {"toy": DatasetFiles("toy", "toy", (Required(("a.bin",)),), (remote,))}
    part = tmp_path / "toy" / "a.bin.part"
    with pytest.raises(DataError) as caught:
        download_dataset("toy", tmp_path, progress=False, catalog=catalog, timeout=10)
    assert re.fullmatch(rf"{re.escape(url)}: the server sent more than the cap of {cap} bytes \({origin}\); stopped "
                        rf"reading at (\d+) bytes, the partial file {re.escape(str(part))} was removed",
                        str(caught.value))
    assert int(re.search(r"at (\d+) bytes", str(caught.value)).group(1)) > cap
    assert list((tmp_path / "toy").iterdir()) == []


def test_bytes_beyond_the_declared_length_are_not_written(server, tmp_path):
    catalog = {"toy": DatasetFiles("toy", "toy", (Required(("a.bin",)),),
                                   (RemoteFile(f"{server.url}/a.bin", "a.bin", None),))}
    server.lie["/a.bin"] = (100, PAYLOAD)
    download_dataset("toy", tmp_path, progress=False, catalog=catalog)
    assert (tmp_path / "toy" / "a.bin").read_bytes() == PAYLOAD[:100]


# --- protocol failures: one line naming the URL, never a traceback ----------------------------------------

@pytest.mark.parametrize("raw,problem", [
    (b"NOT HTTP AT ALL\r\n\r\n", "malformed HTTP response (BadStatusLine: NOT HTTP AT ALL)"),
    (b"HTTP/1.1 2OO OK\r\nContent-Length: 1\r\n\r\nx", "malformed HTTP response (BadStatusLine: HTTP/1.1 2OO OK)"),
    (b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
     "malformed HTTP response (LineTooLong: got more than 65536 bytes when reading header line)"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 101 + b"\r\n",
     "malformed HTTP response (HTTPException: got more than 100 headers)"),
    (b"", "malformed HTTP response (RemoteDisconnected: Remote end closed connection without response)"),
])
def test_malformed_responses_are_one_line_data_errors(server, tmp_path, raw, problem):
    catalog = toy_catalog(server)
    server.raw["/a.bin"] = raw
    with pytest.raises(DataError) as caught:
        download_dataset("toy", tmp_path, progress=False, catalog=catalog, timeout=10)
    assert str(caught.value) == f"{server.url}/a.bin: {problem}"
    assert not (tmp_path / "toy" / "a.bin.part").exists()


def test_a_silent_server_times_out_as_a_data_error(server, tmp_path):
    catalog = toy_catalog(server)
    server.stall = 1.5
    with pytest.raises(DataError, match=rf"^{re.escape(server.url)}/a.bin: no response \(TimeoutError: timed out\)$"):
        download_dataset("toy", tmp_path, progress=False, catalog=catalog, timeout=0.3)


def test_cli_prints_a_bad_status_line_as_one_line_and_exits_2(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(CATALOG, "toy-bad", toy_catalog(server)["toy"])
    server.raw["/a.bin"] = b"\x00\x01garbage\r\n\r\n"
    assert main(["data", "download", "toy-bad", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"mrvae: error: {server.url}/a.bin: malformed HTTP response (BadStatusLine: ??garbage)\n"
