"""jaxdl.data: data set readers, the loader, and on-device augmentation.

    >>> from jaxdl import data
    >>> train = data.load("digits", "train")          # embedded, no files needed
    >>> train.images.shape, train.images.dtype
    ((1438, 8, 8, 1), dtype('uint8'))
    >>> for batch in data.batches(train, 128, seed=0, epoch=0):
    ...     pass                                       # {"image": u8[128,8,8,1], "label": i32[128]}

Readers return a :class:`Dataset` (``images <u8>[N, H, W, C]``, ``labels <i32>[N]``). Where
files are looked for, formats, the download command and the loader are described in
docs/data.md.
"""

from jaxdl.data.augment import AUGMENTATIONS, make_augment, normalize, random_crop, random_erasing, random_flip
from jaxdl.data.cifar import read_cifar
from jaxdl.data.csv_reader import read_csv
from jaxdl.data.dataset import Dataset
from jaxdl.data.datasets import PATH_SPECS, DatasetInfo, available, info, load, locate
from jaxdl.data.download import DOWNLOADS, RemoteFile, download
from jaxdl.data.idx import read_idx
from jaxdl.data.images import read_image_folder, read_zip
from jaxdl.data.loader import batches, epoch_order, num_batches, prefetch_to_device, train_val_split
from jaxdl.data.preprocess import channel_stats, to_model_input
from jaxdl.data.search import cache_dir, search_roots
from jaxdl.data.shapes import ShapesSet, make_shapes

__all__ = [
    "Dataset", "DatasetInfo", "load", "available", "info", "locate", "PATH_SPECS",
    "read_idx", "read_cifar", "read_image_folder", "read_zip", "read_csv",
    "download", "DOWNLOADS", "RemoteFile", "cache_dir", "search_roots",
    "epoch_order", "num_batches", "batches", "train_val_split", "prefetch_to_device",
    "random_crop", "random_flip", "normalize", "random_erasing", "make_augment", "AUGMENTATIONS",
    "to_model_input", "channel_stats", "make_shapes", "ShapesSet",
]
