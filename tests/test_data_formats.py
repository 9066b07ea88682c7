"""Every reader on small files written here in the true published format: exact round trips, splits, errors."""

import os
import pickle
import re
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from mrvae.data import DATASETS, DataError, dynamic_binarise, fixed_binarise, load_data, random_hflip
from mrvae.data.catalog import CATALOG, DSPRITES_FILE
from mrvae.data.celeba import crop_and_resize, load_celeba
from mrvae.data.cifar import load_cifar10, read_cifar_batch
from mrvae.data.dsprites import load_dsprites, read_dsprites
from mrvae.data.idx import load_mnist_continuous, load_mnist_family
from mrvae.data.omniglot import chardata_images, load_omniglot
from mrvae.data.preprocess import IMAGE_SIGMA2, TEST_BINARISATION_SEED, VALID_BINARISATION_SEED, hold_out
from mrvae.data.svhn import load_svhn, read_svhn
from mrvae.data.text import BOS_INDEX, EOS_INDEX, UNK_INDEX, build_vocabulary, load_text
from mrvae.objectives import Likelihood

RNG = np.random.default_rng(0)
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


# ----- writers of the published formats (independent of the readers) -----

def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def write_mnist_family(folder: Path, n_train: int, n_test: int, compress_train: bool = True) -> dict:
    folder.mkdir(parents=True)
    arrays = {"train_images": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train_labels": RNG.integers(0, 10, n_train, dtype=np.uint8),
              "test_images": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "test_labels": RNG.integers(0, 10, n_test, dtype=np.uint8)}
    for (key, array), name in zip(arrays.items(), IDX_NAMES):
        compress = compress_train and key.startswith("train")
        write_idx(folder / (name + (".gz" if compress else "")), array, compress)
    return arrays


def write_amat(folder: Path, sizes=(6, 3, 4)) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    rows = []
    for split, n in zip(("train", "valid", "test"), sizes):
        data = RNG.integers(0, 2, (n, 784), dtype=np.uint8)
        (folder / f"binarized_mnist_{split}.amat").write_text("".join(" ".join(map(str, r)) + "\n" for r in data))
        rows.append(data)
    return rows


def write_chardata(folder: Path, n_train: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) stored as MATLAB does: each column one image, column-major."""
    folder.mkdir(parents=True)
    train, test = RNG.random((n_train, 28, 28)), RNG.random((n_test, 28, 28))
    columns = lambda images: np.stack([im.flatten(order="F") for im in images], axis=1)  # noqa: E731
    target = np.eye(50)[:, RNG.integers(0, 50, n_train)]
    savemat(folder / "chardata.mat", {"data": columns(train), "testdata": columns(test), "target": target,
                                      "testtarget": np.eye(50)[:, RNG.integers(0, 50, n_test)]})
    return train, test, target.argmax(axis=0)


def write_cifar(folder: Path, per_batch: int, n_test: int) -> tuple[np.ndarray, np.ndarray]:
    """Pickled dicts with bytes keys (as the published python batches), protocol 2."""
    folder.mkdir(parents=True)
    rows, labels = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = n_test if name == "test_batch" else per_batch
        data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
        batch_labels = [int(v) for v in RNG.integers(0, 10, n)]
        with open(folder / name, "wb") as out:
            pickle.dump({b"batch_label": name.encode(), b"labels": batch_labels, b"data": data,
                         b"filenames": [f"img_{i}.png".encode() for i in range(n)]}, out, protocol=2)
        rows.append(data)
        labels.append(np.array(batch_labels))
    return rows, labels


def write_svhn(folder: Path, n_train: int, n_test: int) -> dict:
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = RNG.integers(1, 11, (n, 1)).astype(np.uint8)
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


BLUE, RED = (0, 0, 255), (255, 0, 0)


def celeba_image(left: int = 15, top: int = 35) -> Image.Image:
    """178×218 red image with a blue 148×148 square at (left, top): by default the centre crop."""
    pixels = np.zeros((218, 178, 3), np.uint8)
    pixels[:] = RED
    pixels[top:top + 148, left:left + 148] = BLUE
    return Image.fromarray(pixels)


def write_celeba(folder: Path, partition: list[int]) -> list[str]:
    images = folder / "img_align_celeba"
    images.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
    for name in names:
        celeba_image().save(images / name, quality=100, subsampling=0)
    (folder / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partition)))
    return names


def write_dsprites(folder: Path, n: int) -> dict:
    folder.mkdir(parents=True)
    arrays = {"imgs": RNG.integers(0, 2, (n, 64, 64), dtype=np.uint8),
              "latents_classes": np.stack([np.zeros(n, np.int64)]
                                          + [RNG.integers(0, s, n) for s in (3, 6, 40, 32, 32)], 1),
              "latents_values": RNG.random((n, 6))}
    # the published file also holds a pickled metadata dict, which the reader must never unpickle
    metadata = np.array({"description": "toy"}, dtype=object)
    np.savez_compressed(folder / DSPRITES_FILE, metadata=metadata, **arrays)
    return arrays


def write_text(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "train.txt").write_text("the cat sat\nthe dog sat down\n\n  the cat  \n")
    (folder / "valid.txt").write_text("the bird sat\n")
    (folder / "test.txt").write_text("a cat sat on the dog and the mat\n")


# ----- readers -----

def test_mnist_family_round_trip_and_splits(tmp_path):
    arrays = write_mnist_family(tmp_path / "kmnist", 30, 7)
    splits = load_mnist_family("kmnist", tmp_path, seed=3, valid_size=5)
    kept, held = hold_out(30, 5, 3)
    images = torch.from_numpy(arrays["train_images"]).float().unsqueeze(1) / 255
    assert torch.equal(splits.train.data, images[kept])
    assert torch.equal(splits.train.labels, torch.from_numpy(arrays["train_labels"]).long()[kept])
    assert torch.equal(splits.valid.data, fixed_binarise(images[held], VALID_BINARISATION_SEED))
    test = torch.from_numpy(arrays["test_images"]).float().unsqueeze(1) / 255
    assert torch.equal(splits.test.data, fixed_binarise(test, TEST_BINARISATION_SEED))
    assert torch.equal(splits.test.labels, torch.from_numpy(arrays["test_labels"]).long())
    assert splits.info.shape == (1, 28, 28) and splits.info.likelihood is Likelihood.BERNOULLI
    assert splits.train_transform is dynamic_binarise
    # the test binarisation is the same whatever the run's seed; the hold-out is not
    other = load_mnist_family("kmnist", tmp_path, seed=4, valid_size=5)
    assert torch.equal(other.test.data, splits.test.data) and not torch.equal(other.train.data, splits.train.data)


def test_continuous_mnist_is_flat_grey_levels_with_a_gaussian_likelihood(tmp_path):
    arrays = write_mnist_family(tmp_path / "mnist", 30, 7)
    splits = load_mnist_continuous(tmp_path, seed=3, valid_size=5)  # from MNIST's own folder
    flat = torch.from_numpy(arrays["train_images"]).float().reshape(30, -1) / 255
    assert splits.info.shape == (784,) and splits.info.likelihood is Likelihood.GAUSSIAN and splits.info.sigma2 == 1.0
    assert splits.train_transform is None and splits.train.data.shape[1] == 784
    assert all(any(torch.equal(row, ref) for ref in flat) for row in splits.train.data)  # grey levels, not binarised
    assert torch.equal(splits.test.data, torch.from_numpy(arrays["test_images"]).float().reshape(7, -1) / 255)


def test_mnist_family_label_count_mismatch(tmp_path):
    folder = tmp_path / "mnist"
    write_mnist_family(folder, 5, 2, compress_train=False)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: 3 labels for 2 images in t10k-images-idx3-ubyte"):
        load_mnist_family("mnist", tmp_path, valid_size=1)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(2, np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", np.zeros((2, 784), np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: expected uint8 images of shape \(N, H, W\)"):
        load_mnist_family("mnist", tmp_path, valid_size=1)


def test_binarized_mnist_round_trip(tmp_path):
    train, valid, test = write_amat(tmp_path / "binarized-mnist")
    splits = load_data("binarized-mnist", tmp_path)
    for dataset, rows in ((splits.train, train), (splits.valid, valid), (splits.test, test)):
        assert torch.equal(dataset.data, torch.from_numpy(rows).float().view(-1, 1, 28, 28))
    assert splits.train_transform is None and splits.info.likelihood is Likelihood.BERNOULLI


def test_omniglot_orientation_and_round_trip(tmp_path):
    train, test, labels = write_chardata(tmp_path / "omniglot", 9, 4)
    splits = load_omniglot(tmp_path, seed=0, valid_size=2)
    kept, held = hold_out(9, 2, 0)
    expected = torch.from_numpy(train.astype(np.float32)).unsqueeze(1)
    assert torch.equal(splits.train.data, expected[kept])
    assert torch.equal(splits.train.labels, torch.from_numpy(labels)[kept])
    assert torch.equal(splits.test.data, fixed_binarise(torch.from_numpy(test.astype(np.float32)).unsqueeze(1),
                                                       TEST_BINARISATION_SEED))
    assert splits.train_transform is dynamic_binarise and len(splits.valid) == 2
    # column-major storage: pixel (row r, column c) is entry c * 28 + r of the column
    column = np.zeros((784, 1))
    column[5 * 28 + 2] = 1.0
    image = chardata_images(column)[0]
    assert image[2, 5] == 1.0 and image.sum() == 1.0


def test_omniglot_wrong_shape_and_missing_key(tmp_path):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    savemat(folder / "chardata.mat", {"data": np.zeros((100, 3)), "testdata": np.zeros((784, 2))})
    with pytest.raises(DataError, match=r"chardata.mat \['data'\]: expected a \(784, N\) matrix of images, "
                                        r"got shape \(100, 3\)"):
        load_omniglot(tmp_path, valid_size=1)
    savemat(folder / "chardata.mat", {"data": np.zeros((784, 3))})
    with pytest.raises(DataError, match=r"chardata.mat: lacks variable\(s\) testdata"):
        load_omniglot(tmp_path, valid_size=1)
    (folder / "chardata.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated")
    with pytest.raises(DataError, match=r"chardata.mat: not a readable MATLAB v5 file"):
        load_omniglot(tmp_path, valid_size=1)


def test_cifar_round_trip_and_splits(tmp_path):
    rows, labels = write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", per_batch=4, n_test=3)
    images, batch_labels = read_cifar_batch(tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_2")
    assert images.shape == (4, 3, 32, 32)
    # row layout: 1,024 red values, then green, then blue, each 32×32 row-major
    assert images[1, 2, 3, 4] == rows[1][1, 2 * 1024 + 3 * 32 + 4]
    np.testing.assert_array_equal(batch_labels, labels[1])
    splits = load_cifar10(tmp_path, seed=1, valid_size=5)
    kept, held = hold_out(20, 5, 1)
    all_train = torch.from_numpy(np.concatenate(rows[:5])).float().view(-1, 3, 32, 32) / 255
    assert torch.equal(splits.train.data, all_train[kept]) and torch.equal(splits.valid.data, all_train[held])
    assert torch.equal(splits.test.data, torch.from_numpy(rows[5]).float().view(-1, 3, 32, 32) / 255)
    assert torch.equal(splits.train.labels, torch.from_numpy(np.concatenate(labels[:5]))[kept])
    assert splits.info.likelihood is Likelihood.GAUSSIAN and splits.info.sigma2 == IMAGE_SIGMA2 == 0.5
    assert splits.train_transform is random_hflip


def python2_batch(data: bytes, labels: list[int]) -> bytes:
    """A CIFAR batch as Python 2's cPickle wrote the published files (protocol 2, str as SHORT_BINSTRING,
    numpy.core.multiarray._reconstruct), assembled opcode by opcode: {'data': uint8 (N, 3072), 'labels'}."""
    def short(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b
    n = len(data) // 3072
    return (b"\x80\x02}q\x00(" + short(b"data")
            + b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + short(b"b") + b"\x87R"
            + b"(K\x01K" + bytes([n]) + b"M" + struct.pack("<H", 3072) + b"\x86"
            + b"cnumpy\ndtype\n" + short(b"u1") + b"K\x00K\x01\x87R"
            + b"(K\x03" + short(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
            + b"\x89T" + struct.pack("<I", len(data)) + data + b"tb"
            + short(b"labels") + b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"eu.")


def test_cifar_python2_pickle_as_published(tmp_path):
    data = RNG.integers(0, 256, 2 * 3072, dtype=np.uint8).tobytes()
    path = tmp_path / "data_batch_1"
    path.write_bytes(python2_batch(data, [7, 3]))
    unrestricted = pickle.loads(path.read_bytes(), encoding="bytes")  # a second reading, for comparison
    images, labels = read_cifar_batch(path)
    np.testing.assert_array_equal(images.reshape(2, 3072), unrestricted[b"data"])
    np.testing.assert_array_equal(images.reshape(-1), np.frombuffer(data, np.uint8))
    assert labels.tolist() == [7, 3]


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar_pickle_cannot_construct_foreign_objects(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: not a CIFAR python batch .*forbidden global "
                                        rf"(posix|nt)\.system"):
        read_cifar_batch(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({b"data": 1}, protocol=2)[:-5])
    with pytest.raises(DataError, match="data_batch_1: not a CIFAR python batch"):
        read_cifar_batch(path)
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: 'data' must be a uint8 array of shape \(N, 3072\), got "
                                        r"ndarray \(2, 10\)"):
        read_cifar_batch(path)
    path.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="data_batch_1: 'labels' must list 2 labels"):
        read_cifar_batch(path)


def test_svhn_round_trip(tmp_path):
    written = write_svhn(tmp_path / "svhn", 12, 5)
    images, labels = read_svhn(tmp_path / "svhn" / "train_32x32.mat")
    x, y = written["train"]
    assert images.shape == (12, 3, 32, 32) and images[7, 2, 3, 30] == x[3, 30, 2, 7]
    np.testing.assert_array_equal(images, x.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(labels, y[:, 0] % 10)
    assert set(labels) <= set(range(10))
    splits = load_svhn(tmp_path, seed=2, valid_size=4)
    kept, held = hold_out(12, 4, 2)
    as_float = torch.from_numpy(x.transpose(3, 2, 0, 1).copy()).float() / 255
    assert torch.equal(splits.train.data, as_float[kept]) and torch.equal(splits.valid.data, as_float[held])
    assert splits.info.sigma2 == 0.5 and splits.train_transform is None


def test_svhn_bad_labels(tmp_path):
    folder = tmp_path / "svhn"
    folder.mkdir()
    savemat(folder / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]])})
    with pytest.raises(DataError, match=r"train_32x32.mat: labels in 'y' must be integers 1..10"):
        read_svhn(folder / "train_32x32.mat")
    savemat(folder / "train_32x32.mat", {"X": np.zeros((32, 32, 2), np.uint8), "y": np.array([[1]])})
    with pytest.raises(DataError, match=r"'X' must be uint8 of shape \(32, 32, 3, N\)"):
        read_svhn(folder / "train_32x32.mat")


def test_celeba_crop_is_exact():
    out = crop_and_resize(celeba_image())
    assert out.shape == (3, 64, 64)
    assert torch.equal(out, torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1).expand(3, 64, 64))
    for left, top in ((16, 35), (14, 35), (15, 36), (15, 34)):  # the crop one pixel off picks up red
        assert crop_and_resize(celeba_image(left, top))[0].max() > 0


def test_celeba_folder(tmp_path):
    names = write_celeba(tmp_path / "celeba", [0, 0, 0, 1, 2])
    splits = load_celeba(tmp_path)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (3, 1, 1)
    assert splits.test.names == [names[4]]
    image = splits.train[1]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert (image - torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1)).abs().max() < 0.05  # JPEG, quality 100
    assert splits.train_transform is random_hflip and splits.info.sigma2 == 0.5
    (tmp_path / "celeba" / "img_align_celeba" / names[0]).write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match=f"{names[0]}: cannot decode image"):
        splits.train[0]
    (tmp_path / "celeba" / "img_align_celeba" / names[2]).unlink()
    with pytest.raises(DataError, match=rf"img_align_celeba/{names[2]}: missing \(listed in list_eval_partition.txt\)"):
        load_celeba(tmp_path)
    (tmp_path / "celeba" / "list_eval_partition.txt").write_text("000001.jpg 7\n")
    with pytest.raises(DataError, match=r"list_eval_partition.txt: line 1 is '000001.jpg 7'"):
        load_celeba(tmp_path)


def test_dsprites_round_trip_without_pickle(tmp_path):
    arrays = write_dsprites(tmp_path / "dsprites", 50)
    imgs, classes, values = read_dsprites(tmp_path / "dsprites" / DSPRITES_FILE)
    np.testing.assert_array_equal(imgs, arrays["imgs"])
    np.testing.assert_array_equal(classes, arrays["latents_classes"])
    np.testing.assert_array_equal(values, arrays["latents_values"])
    splits = load_dsprites(tmp_path, seed=5)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (40, 5, 5)
    index = torch.cat([splits.train.index, splits.valid.index, splits.test.index])
    assert torch.equal(index.sort().values, torch.arange(50))
    for dataset in (splits.train, splits.test):
        expected = torch.from_numpy(arrays["imgs"]).float().unsqueeze(1)[dataset.index]
        assert torch.equal(dataset.batch(torch.arange(len(dataset))), expected)
        assert torch.equal(dataset[2], expected[2])
        assert torch.equal(dataset.factors, torch.from_numpy(arrays["latents_classes"][:, 1:])[dataset.index])
    assert splits.info.shape == (1, 64, 64) and splits.info.likelihood is Likelihood.BERNOULLI


def test_dsprites_malformed(tmp_path):
    folder = tmp_path / "dsprites"
    folder.mkdir()
    np.savez(folder / DSPRITES_FILE, imgs=np.zeros((3, 64, 64), np.uint8), latents_classes=np.zeros((3, 5), np.int64),
             latents_values=np.zeros((3, 6)))
    with pytest.raises(DataError, match=r"'latents_classes' must have shape \(3, 6\), got \(3, 5\)"):
        read_dsprites(folder / DSPRITES_FILE)
    np.savez(folder / DSPRITES_FILE, imgs=np.array([None, 1], dtype=object), latents_classes=np.zeros((2, 6)),
             latents_values=np.zeros((2, 6)))
    with pytest.raises(DataError, match=f"{DSPRITES_FILE}: not a readable dSprites npz .*allow_pickle"):
        read_dsprites(folder / DSPRITES_FILE)
    (folder / DSPRITES_FILE).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=f"{DSPRITES_FILE}: not a readable dSprites npz"):
        read_dsprites(folder / DSPRITES_FILE)


def test_text_vocabulary_and_padding(tmp_path):
    write_text(tmp_path / "text")
    splits = load_text(tmp_path, max_length=200)
    vocab = splits.notes["vocabulary"]
    # specials, then by count (the 3; cat, sat 2; dog, down 1), ties alphabetical
    assert vocab == ("<pad>", "<unk>", "<bos>", "<eos>", "the", "cat", "sat", "dog", "down")
    assert splits.info.vocab_size == 9 and splits.info.shape == (6,)  # <bos> + longest sentence 4 + <eos>
    assert splits.info.likelihood is Likelihood.CATEGORICAL
    ids = {w: i for i, w in enumerate(vocab)}
    bos = BOS_INDEX
    assert splits.train.data.tolist() == [[bos, ids["the"], ids["cat"], ids["sat"], EOS_INDEX, 0],
                                          [bos, ids["the"], ids["dog"], ids["sat"], ids["down"], EOS_INDEX],
                                          [bos, ids["the"], ids["cat"], EOS_INDEX, 0, 0]]
    assert splits.valid.data.tolist() == [[bos, ids["the"], UNK_INDEX, ids["sat"], EOS_INDEX, 0]]
    # longer than T: cut to T - 2 words between <bos> and <eos>
    assert splits.test.data.tolist() == [[bos, UNK_INDEX, ids["cat"], ids["sat"], UNK_INDEX, EOS_INDEX]]
    small = load_text(tmp_path, max_vocab=6, min_count=1, max_length=4)
    assert small.notes["vocabulary"][4:] == ("the", "cat") and small.info.shape == (4,)
    assert small.train.data[1].tolist() == [bos, ids["the"], UNK_INDEX, EOS_INDEX]
    assert build_vocabulary([["a", "a", "b"]], max_size=None, min_count=2).tokens[4:] == ("a",)


def test_text_not_utf8(tmp_path):
    write_text(tmp_path / "text")
    (tmp_path / "text" / "valid.txt").write_bytes(b"ok line\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"valid.txt: not UTF-8 text \(line 2, byte offset 12\)"):
        load_text(tmp_path)


# ----- the registry: every name loads from files under one root; missing files say what to do -----

FILE_SETS = ("mnist", "fashion-mnist", "kmnist", "binarized-mnist", "omniglot", "cifar10", "svhn", "celeba",
             "dsprites", "text")


def test_every_dataset_is_registered():
    assert set(FILE_SETS) | {"dsprites-like"} <= set(DATASETS)
    assert not DATASETS["dsprites-like"].needs_files and all(DATASETS[n].needs_files for n in FILE_SETS)


@pytest.mark.parametrize("name", FILE_SETS)
def test_missing_files_name_the_exact_path(tmp_path, monkeypatch, name):
    monkeypatch.setitem(CATALOG, name, replace(CATALOG[name], fallbacks=()))  # ignore Debian's Fashion-MNIST
    expected = tmp_path / CATALOG[name].folder / CATALOG[name].required[0].paths[0]
    hint = f"run `mrvae data download {name}`" if CATALOG[name].remote else "place|browser"
    with pytest.raises(DataError, match=f"^{re.escape(str(expected))}.*: missing \\({name}\\); .*({hint})"):
        load_data(name, tmp_path)


def test_load_data_reads_every_format_under_one_root(tmp_path, monkeypatch):
    """Default hold-outs: 10,000 for the MNIST family, 1,345 Omniglot, 5,000 CIFAR-10 and SVHN."""
    for name in ("mnist", "fashion-mnist", "kmnist"):
        write_mnist_family(tmp_path / name, 10_003, 2, compress_train=False)
    write_amat(tmp_path / "binarized-mnist")
    write_chardata(tmp_path / "omniglot", 1_347, 2)
    write_cifar(tmp_path / "cifar10" / "cifar-10-batches-py", per_batch=1_001, n_test=2)
    write_svhn(tmp_path / "svhn", 5_002, 2)
    write_celeba(tmp_path / "celeba", [0, 1, 2])
    write_dsprites(tmp_path / "dsprites", 20)
    write_text(tmp_path / "text")
    monkeypatch.setenv("MRVAE_DATA", str(tmp_path))
    train_sizes = {"mnist": 3, "fashion-mnist": 3, "kmnist": 3, "binarized-mnist": 6, "omniglot": 2, "cifar10": 5,
                   "svhn": 2, "celeba": 1, "dsprites": 16, "text": 3}
    for name, size in train_sizes.items():
        splits = load_data(name, None, seed=0)
        assert len(splits.train) == size, name
        assert splits.info.name == name and tuple(splits.train[0].shape) == splits.info.shape
