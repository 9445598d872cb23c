"""Image-captioning data: a generated "shapes" set, Flickr8k / COCO caption readers, a word vocabulary.

* :func:`shapes_captions` draws images of coloured shapes and sentences describing them,
  deterministic in ``seed`` (no files, so tests and the offline experiment can use it). Each image
  holds one or two shapes (circle, square, triangle; red, green, blue, yellow; small or large, one
  per quadrant); each gets several reference captions (paraphrases of the same facts), e.g.
  ``"a large red circle at the top left"`` and ``"there is a large red circle in the top left"``;
  two shapes are named left to right: ``"a green square left of a small blue triangle"``.
* :func:`read_flickr8k_tokens` reads ``Flickr8k.token.txt`` (``<image>#<k>\\t<caption>`` per line).
* :func:`read_coco_captions` reads COCO ``captions_*.json`` (``images`` with ``id, file_name``,
  ``annotations`` with ``image_id, caption``).
* :class:`WordVocab` with ``<pad>=0, <bos>=1, <eos>=2, <unk>=3``; :func:`tokenize` lowercases and
  splits on non-letters/digits, as the Karpathy splits of Flickr8k/COCO do.

Malformed files raise :class:`jaxdl.errors.CorruptFileError` naming the file (and line).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from jaxdl.errors import CorruptFileError, DatasetNotFoundError

__all__ = ["CaptionSet", "WordVocab", "tokenize", "shapes_captions", "read_flickr8k_tokens",
           "read_coco_captions", "PAD", "BOS", "EOS", "UNK"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3
_SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.22, "large": 0.4}  # diameter (circle) / extent as a fraction of the image side


def tokenize(caption: str) -> list[str]:
    """Lowercase words: ``"A dog, running!"`` -> ``["a", "dog", "running"]``."""
    return re.findall(r"[a-z0-9]+", caption.lower())


@dataclasses.dataclass(frozen=True)
class WordVocab:
    """Words by id; ids 0..3 are ``<pad> <bos> <eos> <unk>``."""

    words: tuple[str, ...]

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> "WordVocab":
        """Words seen at least ``min_count`` times (Show and Tell kept words seen >= 5 times on COCO,
        Vinyals et al. 2015 sec. 4.3.1), in order of decreasing count then alphabetically."""
        counts = collections.Counter(w for c in captions for w in tokenize(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(_SPECIALS + tuple(kept))

    @property
    def size(self) -> int:
        return len(self.words)

    def encode(self, caption: str, max_len: int) -> np.ndarray:
        """``<i32>[max_len + 2]``: ``<bos> w1 .. wk <eos> <pad> ..``, words past ``max_len`` cut."""
        index = {w: i for i, w in enumerate(self.words)}
        ids = [index.get(w, UNK) for w in tokenize(caption)][:max_len]
        out = np.full(max_len + 2, PAD, np.int32)
        out[0] = BOS
        out[1:len(ids) + 1] = ids
        out[len(ids) + 1] = EOS
        return out

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Words up to the first ``<eos>`` (``<bos>``/``<pad>`` skipped)."""
        words = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == EOS:
                break
            if i not in (PAD, BOS):
                words.append(self.words[i] if 0 <= i < self.size else "<unk>")
        return words


@dataclasses.dataclass(frozen=True, eq=False)
class CaptionSet:
    """``images: <u8>[N, H, W, C]`` and ``captions[i]``: the reference sentences of image ``i``."""

    images: np.ndarray
    captions: tuple[tuple[str, ...], ...]
    name: str = ""

    def __len__(self) -> int:
        return len(self.captions)


def _draw(canvas: np.ndarray, shape: str, colour: tuple[int, int, int], cy: float, cx: float, size: float) -> None:
    h, w = canvas.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    r = size * h / 2
    if shape == "circle":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
    elif shape == "square":
        mask = (np.abs(yy - cy) <= r * 0.85) & (np.abs(xx - cx) <= r * 0.85)
    else:  # upward triangle: below the two slanted edges, above the base
        top, base = cy - r, cy + r * 0.8
        half_width = (yy - top) / (base - top) * r
        mask = (yy >= top) & (yy <= base) & (np.abs(xx - cx) <= half_width)
    canvas[mask] = colour


def shapes_captions(num_images: int, *, seed: int = 0, image_size: int = 32) -> CaptionSet:
    """The generated shapes captioning set: ``num_images`` RGB images with 3 reference captions each.

    Deterministic in ``(num_images, seed, image_size)``: the same arguments give the same arrays.
    """
    rng = np.random.default_rng([seed, 31337])
    images = np.zeros((num_images, image_size, image_size, 3), np.uint8)
    captions = []
    quadrants = [("top", "left"), ("top", "right"), ("bottom", "left"), ("bottom", "right")]
    colour_names, size_names = list(COLOURS), list(SIZES)
    for n in range(num_images):
        canvas = rng.integers(0, 30, (image_size, image_size, 3)).astype(np.uint8)  # dark noisy background
        count = 1 + int(rng.random() < 0.5)
        spots = rng.choice(4, size=count, replace=False)
        objects = []
        for q in spots:
            vert, horiz = quadrants[q]
            size = size_names[rng.integers(2)]
            colour = colour_names[rng.integers(4)]
            shape = SHAPES[rng.integers(3)]
            quarter = image_size / 4
            cy = quarter * (1 if vert == "top" else 3) + rng.uniform(-1.5, 1.5)
            cx = quarter * (1 if horiz == "left" else 3) + rng.uniform(-1.5, 1.5)
            _draw(canvas, shape, COLOURS[colour], cy, cx, SIZES[size])
            objects.append({"vert": vert, "horiz": horiz, "size": size, "colour": colour, "shape": shape, "cx": cx})
        images[n] = canvas
        if count == 1:
            o = objects[0]
            what = f"{o['size']} {o['colour']} {o['shape']}"
            refs = (f"a {what} at the {o['vert']} {o['horiz']}",
                    f"there is a {what} in the {o['vert']} {o['horiz']}",
                    f"a {what}")
        else:
            a, b = sorted(objects, key=lambda o: o["cx"])
            if a["horiz"] == b["horiz"]:  # same column: name them top to bottom
                a, b = sorted(objects, key=lambda o: o["vert"] != "top")
                relation = "above"
            else:
                relation = "left of"
            refs = (f"a {a['size']} {a['colour']} {a['shape']} {relation} a {b['size']} {b['colour']} {b['shape']}",
                    f"a {a['colour']} {a['shape']} {relation} a {b['colour']} {b['shape']}",
                    f"a {a['colour']} {a['shape']} and a {b['colour']} {b['shape']}")
        captions.append(refs)
    return CaptionSet(images, tuple(captions), name=f"shapes/seed{seed}")


def read_flickr8k_tokens(path: str | Path) -> dict[str, list[str]]:
    """``Flickr8k.token.txt`` -> ``{image file name: [caption, ...]}`` in file order.

    Each non-empty line is ``<image>.jpg#<k>\\t<caption>`` (k = 0..4 for Flickr8k's five captions).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"Flickr8k token file {path} does not exist (expected Flickr8k.token.txt)")
    out: dict[str, list[str]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        image, hash_, k = key.partition("#")
        if not tab or not hash_ or not k.strip().isdigit() or not image or not caption.strip():
            raise CorruptFileError(f"{path}, line {number}: expected '<image>#<k>\\t<caption>' as in "
                                   f"Flickr8k.token.txt, got {line[:60]!r}")
        out.setdefault(image.strip(), []).append(caption.strip())
    if not out:
        raise CorruptFileError(f"{path} holds no captions")
    return out


def read_coco_captions(path: str | Path) -> dict[str, list[str]]:
    """COCO ``captions_{train,val}2014.json`` -> ``{file_name: [caption, ...]}``.

    Images without a caption are left out; an annotation naming an unknown image id is an error.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"COCO captions file {path} does not exist (expected captions_*.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptFileError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise CorruptFileError(f"{path}: a COCO captions file is an object with 'images' and 'annotations' lists")
    names = {}
    for k, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise CorruptFileError(f"{path}: images[{k}] needs 'id' and 'file_name'")
        names[image["id"]] = image["file_name"]
    out: dict[str, list[str]] = {}
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or not isinstance(ann.get("caption"), str):
            raise CorruptFileError(f"{path}: annotations[{k}] needs 'image_id' and a 'caption' string")
        if ann["image_id"] not in names:
            raise CorruptFileError(f"{path}: annotations[{k}] refers to image id {ann['image_id']!r}, "
                                   f"which is not in 'images'")
        out.setdefault(names[ann["image_id"]], []).append(ann["caption"].strip())
    return out
