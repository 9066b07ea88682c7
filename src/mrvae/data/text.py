"""Text corpora: ``{train,valid,test}.txt``, one sentence per line, whitespace tokens -> padded id sequences."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ..objectives import PAD_INDEX, Likelihood
from .base import ArrayDataset, DataInfo, DataSplits
from .catalog import CATALOG
from .errors import DataError

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
#: The token ids of every text batch, read from here by the models (``LSTMVAE``'s defaults) and by users:
#: each special's position in ``SPECIALS``. ``PAD_INDEX`` (0) is the one the categorical distortion
#: ignores, so it is defined beside it in ``mrvae.objectives`` and re-exported here.
UNK_INDEX, BOS_INDEX, EOS_INDEX = 1, 2, 3
#: Defaults in the spirit of the Yahoo Answers setup (Yang et al. 2017): a 20,000-word vocabulary and
#: sequences of at most 200 tokens.
MAX_VOCAB = 20_000
MAX_LENGTH = 200
DESCRIPTION = "text corpus (train/valid/test.txt), whitespace tokens, padded id sequences; categorical"

assert SPECIALS.index(PAD) == PAD_INDEX and SPECIALS.index(UNK) == UNK_INDEX
assert SPECIALS.index(BOS) == BOS_INDEX and SPECIALS.index(EOS) == EOS_INDEX


@dataclass(frozen=True)
class Vocabulary:
    """Token list (ids are positions; the four specials <pad>=0, <unk>=1, <bos>=2, <eos>=3 come first)."""

    tokens: tuple[str, ...]
    ids: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.tokens[:len(SPECIALS)] != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}, got {self.tokens[:len(SPECIALS)]}")
        object.__setattr__(self, "ids", {token: i for i, token in enumerate(self.tokens)})

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, words: Iterable[str]) -> list[int]:
        """Words -> ids; unknown words -> ``UNK_INDEX``."""
        return [self.ids.get(word, UNK_INDEX) for word in words]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> tokens, stopping at the first <eos> or <pad>."""
        words = []
        for i in ids:
            if int(i) in (EOS_INDEX, PAD_INDEX):
                break
            words.append(self.tokens[int(i)])
        return words


def build_vocabulary(sentences: Iterable[list[str]], max_size: int | None = MAX_VOCAB,
                     min_count: int = 1) -> Vocabulary:
    """Training sentences -> the specials, then words seen at least ``min_count`` times, most frequent
    first (ties alphabetical), cut so the whole vocabulary has at most ``max_size`` entries."""
    if max_size is not None and max_size <= len(SPECIALS):
        raise ValueError(f"max_size must exceed the {len(SPECIALS)} special tokens, got {max_size}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = Counter(word for sentence in sentences for word in sentence if word not in SPECIALS)
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    if max_size is not None:
        words = words[:max_size - len(SPECIALS)]
    return Vocabulary(SPECIALS + tuple(words))


def encode_sentences(sentences: list[list[str]], vocabulary: Vocabulary, length: int) -> Tensor:
    """Sentences -> (N, length) long ids: <bos>, each sentence's words (cut to ``length`` − 2), <eos>,
    then <pad> (0). A decoder reads x[:, :-1] and predicts x[:, 1:] (``mrvae.models.LSTMVAE``)."""
    if length < 2:
        raise ValueError(f"length must be >= 2 (<bos> and <eos>), got {length}")
    out = torch.full((len(sentences), length), PAD_INDEX, dtype=torch.long)
    for row, words in enumerate(sentences):
        ids = [BOS_INDEX] + vocabulary.encode(words[:length - 2]) + [EOS_INDEX]
        out[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def read_sentences(path: Path) -> list[list[str]]:
    """A UTF-8 text file -> its non-blank lines, each split on whitespace."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(f"{path}: not UTF-8 text (line {line}, byte offset {err.start})") from err
    return [line.split() for line in text.splitlines() if line.strip()]


def load_text(root: Path, seed: int = 0, max_vocab: int | None = MAX_VOCAB, min_count: int = 1,
              max_length: int = MAX_LENGTH) -> DataSplits:
    """``root/text/{train,valid,test}.txt`` -> (N, T) long id splits, T = min(``max_length``, longest
    training sentence + 1); vocabulary from train (``max_vocab`` entries at most, words seen at least
    ``min_count`` times), kept in ``notes["vocabulary"]``. Categorical likelihood, padding id 0
    ignored by the distortion. Blank lines are skipped. ``seed`` is unused (the splits are given)."""
    files = CATALOG["text"]
    folder = files.locate(root)
    train, valid, test = (read_sentences(files.file(folder, i)) for i in range(3))
    if not train:
        raise DataError(f"{files.file(folder, 0)}: holds no sentences")
    vocabulary = build_vocabulary(train, max_vocab, min_count)
    length = min(max_length, 2 + max(len(s) for s in train))
    info = DataInfo("text", (length,), Likelihood.CATEGORICAL, vocab_size=len(vocabulary), description=DESCRIPTION)
    return DataSplits(info, ArrayDataset(encode_sentences(train, vocabulary, length)),
                      ArrayDataset(encode_sentences(test, vocabulary, length)),
                      valid=ArrayDataset(encode_sentences(valid, vocabulary, length)),
                      notes={"vocabulary": vocabulary.tokens, "pad_index": PAD_INDEX, "unk_index": UNK_INDEX,
                             "bos_index": BOS_INDEX, "eos_index": EOS_INDEX})
