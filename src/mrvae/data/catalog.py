"""Where each data set's files live under the data root, and where they are downloaded from (URL, checksum)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import DataError

#: Where Debian's ``dataset-fashion-mnist`` package installs the four Fashion-MNIST IDX files.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


class HashAlgorithm(str, Enum):
    """Checksum algorithm of a published checksum."""

    MD5 = "md5"
    SHA256 = "sha256"


def name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a file inside a data set's folder, or None when it can.

    A catalog name is a non-empty relative POSIX path of plain names, written in normal form: no
    absolute path or drive (``/x``, ``C:x``), no ``..`` or ``.`` part, no empty part (``a//b``, ``a/``),
    no backslash and no control character.
    """
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not a string"
    if not name:
        return "is empty"
    if any(not character.isprintable() for character in name):
        return "contains a control character"
    if "\\" in name:
        return "contains a backslash"
    posix = PurePosixPath(name)
    if posix.is_absolute():
        return "is an absolute path"
    if PureWindowsPath(name).drive:
        return "starts with a drive (as 'C:')"
    if ".." in posix.parts:
        return "contains '..'"
    if name == "." or str(posix) != name:
        return "is not a plain relative path (write 'a/b', not './a', 'a/./b', 'a//b' or 'a/')"
    return None


def check_name(name: object, entry: str, what: str = "file name") -> None:
    """Raise ``DataError`` ("<entry>: <what> '<name>' <problem>; ...") unless ``name_problem`` accepts it."""
    problem = name_problem(name)
    if problem is not None:
        raise DataError(f"{entry}: {what} {name!r} {problem}; catalog names must be relative paths inside "
                        f"the data set's folder")


def inside(folder: Path, name: str, entry: str) -> Path:
    """``folder / name`` once ``name`` passes ``check_name`` and the path, symbolic links resolved, stays
    inside ``folder`` (itself resolved); ``DataError`` naming ``entry`` and ``name`` otherwise."""
    check_name(name, entry)
    target = Path(folder) / name
    try:
        base = Path(folder).resolve()
        resolved = target.resolve()
    except (OSError, RuntimeError) as err:  # a loop of symbolic links
        raise DataError(f"{entry}: file name {name!r} cannot be resolved in {folder} ({err}); refused") from err
    if resolved == base or not resolved.is_relative_to(base):
        raise DataError(f"{entry}: file name {name!r} resolves to {resolved}, outside the data set's folder "
                        f"{base}; refused")
    return target


class Archive(str, Enum):
    """What to do with a downloaded file: keep it as it is, or extract a gzipped tar archive."""

    NONE = "none"
    TAR_GZ = "tar.gz"


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: ``url`` (http or https), saved as ``filename`` in the data set's folder,
    checked against ``checksum`` (hex, ``algorithm``); ``checksum`` None means none is published (the
    download is then unverified and says so). ``archive`` TAR_GZ extracts the members under
    ``extract_prefix``.

    ``filename`` must pass ``check_name`` (a relative path inside the folder): a bad one raises
    ``DataError`` here. ``size`` is the file's exact size in bytes where known: a server announcing or
    sending more is refused. Without it the download is capped at ``max_bytes``, or at
    ``download.MAX_DOWNLOAD_BYTES`` (4 GiB) when that is None too.
    """

    url: str
    filename: str
    checksum: str | None
    algorithm: HashAlgorithm = HashAlgorithm.MD5
    checksum_source: str = "published"
    archive: Archive = Archive.NONE
    extract_prefix: str = ""
    size: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.url, str) or not self.url.startswith(("http://", "https://")) \
                or any(not c.isprintable() or c.isspace() for c in self.url):
            raise DataError(f"{self.url!r}: not an http(s) URL without spaces or control characters")
        check_name(self.filename, self.url)
        for field in ("size", "max_bytes"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise DataError(f"{self.url}: {field} must be a positive number of bytes, got {value!r}")


@dataclass(frozen=True)
class Required:
    """A file the reader needs, as paths relative to the data set's folder; the first one present is
    used (e.g. an IDX file gzipped or not). ``directory`` marks a folder that must exist and be non-empty."""

    paths: tuple[str, ...]
    directory: bool = False

    def __post_init__(self) -> None:
        if not self.paths:
            raise DataError("required file: names no path")
        for rel in self.paths:
            check_name(rel, "required file", "path")

    def find(self, folder: Path) -> Path | None:
        """The first of ``paths`` present under ``folder``, or None."""
        for rel in self.paths:
            path = folder / rel
            if self.directory and path.is_dir() and any(path.iterdir()):
                return path
            if not self.directory and path.is_file():
                return path
        return None


@dataclass(frozen=True)
class DatasetFiles:
    """The files of one data set: its ``folder`` under the data root, the ``required`` files, the
    ``remote`` files to download (empty where there is no canonical URL: ``manual`` says where to get
    them), and ``fallbacks``: other folders searched when the data root lacks the files.

    ``folder`` and every file name must pass ``check_name``: a ``DataError`` naming the entry and the
    bad name is raised here, and ``download_dataset`` checks each destination again before writing.
    """

    name: str
    folder: str
    required: tuple[Required, ...]
    remote: tuple[RemoteFile, ...] = ()
    manual: str = ""
    fallbacks: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        check_name(self.folder, self.name, "folder")
        for req in self.required:
            for rel in req.paths:
                check_name(rel, self.name, "path")
        for remote in self.remote:
            check_name(remote.filename, f"{self.name} ({remote.url})")

    def primary(self, root: Path) -> Path:
        """The folder under ``root`` that holds this data set's files."""
        return Path(root) / self.folder

    def complete_in(self, folder: Path) -> bool:
        """Whether every required file is present in ``folder``."""
        return all(req.find(folder) is not None for req in self.required)

    def how_to_get(self) -> str:
        """One sentence: the download command, or how to place the files by hand."""
        if self.remote:
            return f"run `mrvae data download {self.name}`"
        return self.manual

    def locate(self, root: Path) -> Path:
        """The folder holding all required files: ``root/folder``, else the first complete fallback.

        Raises ``DataError`` naming the first missing file at the expected path and how to get it.
        """
        primary = self.primary(root)
        for folder in (primary, *self.fallbacks):
            if self.complete_in(folder):
                return folder
        missing = next(req for req in self.required if req.find(primary) is None)
        alternatives = " or ".join(str(primary / rel) for rel in missing.paths)
        raise DataError(f"{alternatives}: missing ({self.name}); {self.how_to_get()}")

    def file(self, folder: Path, index: int) -> Path:
        """The present path of required file ``index`` in ``folder`` (after ``locate``)."""
        path = self.required[index].find(folder)
        if path is None:
            raise DataError(f"{folder / self.required[index].paths[0]}: missing ({self.name}); {self.how_to_get()}")
        return path


def _idx(stem: str) -> Required:
    return Required((stem, stem + ".gz"))


_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")


def _idx_remote(base: str, md5s: tuple[str, str, str, str],
                sizes: tuple[int | None, ...] = (None,) * 4) -> tuple[RemoteFile, ...]:
    return tuple(RemoteFile(base + stem + ".gz", stem + ".gz", md5, size=size)
                 for stem, md5, size in zip(_IDX_FILES, md5s, sizes))


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
KMNIST_URL = "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"
BINARIZED_MNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
OMNIGLOT_URL = "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_URL = "https://github.com/deepmind/dsprites-dataset/raw/master/" + DSPRITES_FILE
CIFAR10_BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
CIFAR10_FOLDER = "cifar-10-batches-py"

#: Every data set read from files. MD5s are the ones published with the data (MNIST, Fashion-MNIST,
#: KMNIST: their download pages / repositories; CIFAR-10: the CIFAR page; SVHN: as used by torchvision).
#: Larochelle's binarised MNIST and the IWAE Omniglot file have no published checksum; DeepMind
#: publishes none for dSprites, the MD5 used here is the one recorded by several public loaders.
#: Sizes (bytes) are given where widely recorded (MNIST, Fashion-MNIST, CIFAR-10, SVHN); the other
#: files are capped at ``download.MAX_DOWNLOAD_BYTES``.
CATALOG: dict[str, DatasetFiles] = {
    "mnist": DatasetFiles(
        "mnist", "mnist", tuple(_idx(s) for s in _IDX_FILES),
        _idx_remote(MNIST_URL, ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
                                "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
                    (9_912_422, 28_881, 1_648_877, 4_542))),
    "fashion-mnist": DatasetFiles(
        "fashion-mnist", "fashion-mnist", tuple(_idx(s) for s in _IDX_FILES),
        _idx_remote(FASHION_MNIST_URL, ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
                                        "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
                    (26_421_880, 29_515, 4_422_102, 5_148)),
        fallbacks=(DEBIAN_FASHION_MNIST_DIR,)),
    "kmnist": DatasetFiles(
        "kmnist", "kmnist", tuple(_idx(s) for s in _IDX_FILES),
        _idx_remote(KMNIST_URL, ("bdb82020997e1d708af4cf47b453dcf7", "e144d726b3acfaa3e44228e80efcd344",
                                 "5c965bf0a639b31b8f53240b1b52f4d7", "7320c461ea6c1c855c0b718fb2a4b134"))),
    "binarized-mnist": DatasetFiles(
        "binarized-mnist", "binarized-mnist",
        tuple(Required((f"binarized_mnist_{s}.amat",)) for s in ("train", "valid", "test")),
        tuple(RemoteFile(f"{BINARIZED_MNIST_URL}binarized_mnist_{s}.amat", f"binarized_mnist_{s}.amat", None,
                         checksum_source="none published") for s in ("train", "valid", "test"))),
    "omniglot": DatasetFiles(
        "omniglot", "omniglot", (Required(("chardata.mat",)),),
        (RemoteFile(OMNIGLOT_URL, "chardata.mat", None, checksum_source="none published"),)),
    "cifar10": DatasetFiles(
        "cifar10", "cifar10", tuple(Required((f"{CIFAR10_FOLDER}/{b}",)) for b in CIFAR10_BATCHES),
        (RemoteFile(CIFAR10_URL, "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
                    archive=Archive.TAR_GZ, extract_prefix=CIFAR10_FOLDER + "/", size=170_498_071),)),
    "svhn": DatasetFiles(
        "svhn", "svhn", (Required(("train_32x32.mat",)), Required(("test_32x32.mat",))),
        (RemoteFile(SVHN_URL + "train_32x32.mat", "train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373",
                    size=182_040_794),
         RemoteFile(SVHN_URL + "test_32x32.mat", "test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3",
                    size=64_275_384))),
    "celeba": DatasetFiles(
        "celeba", "celeba", (Required(("img_align_celeba",), directory=True), Required(("list_eval_partition.txt",))),
        manual=("CelebA is served from Google Drive, which needs a browser: get img_align_celeba.zip and "
                "list_eval_partition.txt from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html and unzip "
                "the images into the celeba folder of the data root")),
    "dsprites": DatasetFiles(
        "dsprites", "dsprites", (Required((DSPRITES_FILE,)),),
        (RemoteFile(DSPRITES_URL, DSPRITES_FILE, "7da33b31b13a06f4b04a70402ce90c2e",
                    checksum_source="recorded by public loaders (DeepMind publishes none)"),)),
    "text": DatasetFiles(
        "text", "text", tuple(Required((f"{s}.txt",)) for s in ("train", "valid", "test")),
        manual=("text has no canonical download: place your corpus as train.txt, valid.txt and test.txt "
                "(one sentence per line, whitespace-separated tokens) in the text folder of the data root")),
}
#: ``mnist-continuous`` reads MNIST's own files from MNIST's folder.
CATALOG["mnist-continuous"] = CATALOG["mnist"]
