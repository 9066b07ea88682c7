"""IDX and .amat parsers: exact round trips, every malformation a DataError naming the file, and fuzzing."""

import gzip
import re
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mrvae.data import DataError
from mrvae.data.amat import parse_amat, read_amat
from mrvae.data.idx import parse_idx, read_idx

CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding written independently of the reader: header, big-endian sizes and data."""
    kind = array.dtype.kind + str(array.dtype.itemsize)
    header = bytes([0, 0, CODES[kind], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_round_trip_every_type(tmp_path, dtype):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(3, 5, 2)) * 100).astype(dtype)
    plain, packed = tmp_path / "a-idx", tmp_path / "a-idx.gz"
    plain.write_bytes(idx_bytes(array))
    packed.write_bytes(gzip.compress(idx_bytes(array)))
    for path in (plain, packed):
        back = read_idx(path)
        assert back.dtype == np.dtype(dtype) and back.dtype.isnative
        np.testing.assert_array_equal(back, array)


def test_idx_header_values_are_big_endian():
    raw = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 2) + struct.pack(">ii", 258, -1)
    np.testing.assert_array_equal(parse_idx(raw), [258, -1])


@pytest.mark.parametrize("raw, message", [
    (b"\x00\x00", "truncated IDX header"),
    (b"\x00\x01\x08\x01" + b"\x00\x00\x00\x01" + b"\x07", "wrong IDX magic number 0x00010801"),
    (b"\x00\x00\x07\x01" + b"\x00\x00\x00\x01" + b"\x07", "wrong IDX magic number 0x00000701"),
    (b"\x00\x00\x08\x00", "IDX header declares 0 dimensions"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", r"truncated IDX header \(8 bytes, expected 16\)"),
    (b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(5), r"truncated: IDX shape \(2, 3\) needs 18 bytes"),
    (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + bytes(3), "trailing bytes"),
])
def test_idx_malformed_raises_data_error_naming_the_file(tmp_path, raw, message):
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: {message}"):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path):
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 4), np.uint8)))[:-12])
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: corrupt or truncated gzip data"):
        read_idx(path)


def test_missing_idx_file(tmp_path):
    with pytest.raises(DataError, match="nope-idx: cannot read"):
        read_idx(tmp_path / "nope-idx")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_idx_fuzz_random_bytes(raw):
    for data in (raw, b"\x00\x00" + raw, gzip.compress(raw), gzip.compress(raw)[: max(2, len(raw) // 2)]):
        try:
            read_idx_bytes(data)
        except DataError as err:
            assert str(err).startswith("fuzz: ")


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(CODES.values())), st.lists(st.integers(0, 6), min_size=1, max_size=3),
       st.integers(-3, 3))
def test_idx_fuzz_valid_headers_with_wrong_lengths(code, shape, extra):
    itemsize = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}[code]
    body = bytes(max(0, int(np.prod(shape)) * itemsize + extra))
    raw = bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + body
    if extra == 0 or len(body) == int(np.prod(shape)) * itemsize:
        assert parse_idx(raw, "fuzz").shape == tuple(shape)
    else:
        with pytest.raises(DataError, match="^fuzz: (truncated|trailing bytes)"):
            parse_idx(raw, "fuzz")


def read_idx_bytes(data: bytes) -> np.ndarray:
    from mrvae.data.idx import decompress_if_gzip

    return parse_idx(decompress_if_gzip(data, "fuzz"), "fuzz")


def amat_text(rows: np.ndarray) -> str:
    return "".join(" ".join(str(int(v)) for v in row) + "\n" for row in rows)


def test_amat_round_trip(tmp_path):
    rows = np.random.default_rng(1).integers(0, 2, size=(7, 784), dtype=np.uint8)
    path = tmp_path / "binarized_mnist_test.amat"
    path.write_text(amat_text(rows) + "\n\n")
    np.testing.assert_array_equal(read_amat(path), rows)
    crlf = tmp_path / "crlf.amat"
    crlf.write_bytes(amat_text(rows).replace("\n", " \r\n").encode())
    np.testing.assert_array_equal(read_amat(crlf), rows)


@pytest.mark.parametrize("text, message", [
    ("", "no rows"),
    ("0 1 1\n1 0\n", "line 2 has 2 values, expected 3"),
    ("0 1 1\n\n1 0 1\n", "line 2 has 0 values, expected 3"),
    ("0 1 2\n", "line 1 holds '2', expected only 0 or 1"),
    ("0 1 0.5\n", "line 1 holds '0.5', expected only 0 or 1"),
    ("0 1 1\n0 1 10\n", "line 2 holds '10'"),
])
def test_amat_malformed(tmp_path, text, message):
    path = tmp_path / "binarized_mnist_train.amat"
    path.write_text(text)
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: {message}"):
        read_amat(path, width=3)


def test_amat_not_ascii(tmp_path):
    path = tmp_path / "x.amat"
    path.write_bytes(b"0 1 \xff\n")
    with pytest.raises(DataError, match=r"x.amat: not ASCII text \(byte 0xff at offset 4\)"):
        read_amat(path, width=3)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("01 \n\t\r2.-x\x0b\x1cé")), max_size=40))
def test_amat_fuzz_text(text):
    try:
        rows = parse_amat(text.encode("utf-8"), "fuzz", width=3)
    except DataError as err:
        assert str(err).startswith("fuzz: ")
    else:
        assert rows.shape[1] == 3 and set(np.unique(rows)) <= {0, 1}


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_amat_fuzz_bytes(raw):
    try:
        parse_amat(raw, "fuzz", width=2)
    except DataError as err:
        assert str(err).startswith("fuzz: ")
