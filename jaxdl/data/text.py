"""Character-level text: corpora that ship offline, a character vocabulary, train/held-out split.

The default corpus, ``"pydoc_topics"``, is the Python Language Reference text that every CPython
installation carries for ``help()`` (``pydoc_data.topics.topics``: about 465,000 characters of
English prose and code on CPython 3.11, 103 distinct characters); its topics are joined in sorted
order, so the text is the same on every machine with the same Python version. Any UTF-8 file
can be used instead (``load_text("path/to/file.txt")``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from jaxdl.errors import CorruptFileError, DatasetNotFoundError

__all__ = ["CharVocab", "load_text", "split_text", "TEXT_CORPORA"]

TEXT_CORPORA = ("pydoc_topics",)


def load_text(name_or_path: str) -> str:
    """The text of a built-in corpus (:data:`TEXT_CORPORA`) or of a UTF-8 file."""
    if name_or_path == "pydoc_topics":
        from pydoc_data import topics  # part of the standard library

        return "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    path = Path(name_or_path)
    if not path.is_file():
        raise DatasetNotFoundError(f"text corpus {name_or_path!r} is neither a built-in corpus "
                                   f"({', '.join(TEXT_CORPORA)}) nor a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    if len(text) < 2:
        raise CorruptFileError(f"{path} holds {len(text)} characters; a language model needs a longer text")
    return text


@dataclasses.dataclass(frozen=True)
class CharVocab:
    """Sorted distinct characters of a text; ids are positions in ``chars``."""

    chars: str

    @classmethod
    def from_text(cls, text: str) -> "CharVocab":
        return cls("".join(sorted(set(text))))

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """``<i32>[len(text)]``; a character outside the vocabulary is a ValueError naming it."""
        index = {c: i for i, c in enumerate(self.chars)}
        try:
            return np.fromiter((index[c] for c in text), np.int32, len(text))
        except KeyError as err:
            raise ValueError(f"character {err.args[0]!r} is not in the vocabulary of {self.size} characters") from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))


def split_text(text: str, held_out_fraction: float = 0.1) -> tuple[str, str]:
    """(train, held-out): the last ``held_out_fraction`` of the text is held out (no shuffling: a
    stream model is evaluated on text it has not read)."""
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    cut = int(round(len(text) * (1.0 - held_out_fraction)))
    return text[:cut], text[cut:]
