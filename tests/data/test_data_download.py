"""download(): streaming, checksum verification, atomic rename, offline failure; with file:// URLs."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from jaxdl import data
from jaxdl.data.download import RemoteFile
from jaxdl.errors import ConfigError, DownloadError


def _source(tmp_path, name="blob.bin", size=3_000_000):
    src = tmp_path / "server" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    return src


def test_good_sha256_and_md5(tmp_path):
    src = _source(tmp_path)
    raw = src.read_bytes()
    for algo in ("sha256", "md5"):
        dest = tmp_path / f"dest-{algo}"
        remote = RemoteFile("blob.bin", (src.as_uri(),), **{algo: hashlib.new(algo, raw).hexdigest()})
        assert data.download("x", dest, files=[remote]) == dest
        assert (dest / "blob.bin").read_bytes() == raw
        assert [p.name for p in dest.iterdir()] == ["blob.bin"]  # no temporary file left


def test_bad_checksum_leaves_nothing(tmp_path):
    src = _source(tmp_path)
    remote = RemoteFile("blob.bin", (src.as_uri(),), sha256="0" * 64)
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match="checksum mismatch") as e:
        data.download("x", dest, files=[remote])
    assert src.as_uri() in str(e.value)
    assert not dest.exists()  # the folder it created is removed again, with no partial file in it
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(DownloadError):
        data.download("x", existing, files=[remote])
    assert list(existing.iterdir()) == []


def test_unreachable_says_offline_and_where_to_put_files(tmp_path):
    urls = ((tmp_path / "no-such-file").as_uri(), "http://127.0.0.1:9/none")
    remote = RemoteFile("t10k-labels-idx1-ubyte.gz", urls, md5="0" * 32)
    with pytest.raises(DownloadError) as e:
        data.download("mnist", tmp_path / "d", files=[remote])
    message = str(e.value)
    assert "offline" in message and all(u in message for u in urls)
    assert str(tmp_path / "d") in message and "t10k-labels-idx1-ubyte.gz" in message
    assert not (tmp_path / "d").exists()


def test_falls_back_to_next_mirror_and_skips_good_files(tmp_path):
    src = _source(tmp_path, size=1000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    remote = RemoteFile("blob.bin", ((tmp_path / "gone").as_uri(), src.as_uri()), sha256=digest)
    dest = data.download("x", tmp_path / "d", files=[remote])
    assert (dest / "blob.bin").read_bytes() == src.read_bytes()
    src.unlink()  # present and verified: not fetched again, so the dead source does not matter
    assert data.download("x", dest, files=[remote]) == dest
    with pytest.raises(DownloadError):
        data.download("x", dest, files=[remote], force=True)
    assert (dest / "blob.bin").is_file()  # a failed forced refresh keeps the good copy


def test_download_into_cache_then_load(tmp_path, roots, fmt):
    expected = fmt.make_idx_set(tmp_path / "server", gz=True)
    files = [RemoteFile(p.name, (p.as_uri(),), sha256=hashlib.sha256(p.read_bytes()).hexdigest())
             for p in sorted((tmp_path / "server").iterdir())]
    dest = data.download("mnist", files=files)
    assert dest == roots.cache / "mnist"
    np.testing.assert_array_equal(data.load("mnist", "test").labels, expected["test"][1])


def test_table_is_well_formed():
    assert sorted(data.DOWNLOADS) == ["cifar10", "cifar100", "fashion_mnist", "mnist"]
    for name, files in data.DOWNLOADS.items():
        for f in files:
            algo, digest = f.checksum
            assert re.fullmatch({"md5": "[0-9a-f]{32}", "sha256": "[0-9a-f]{64}"}[algo], digest), (name, f)
            assert all(u.endswith("/" + f.filename) for u in f.urls)
    idx_names = {f.filename for f in data.DOWNLOADS["mnist"]}
    assert idx_names == {f.filename for f in data.DOWNLOADS["fashion_mnist"]}
    with pytest.raises(ConfigError, match="digits"):
        data.download("digits")
    with pytest.raises(ConfigError, match="checksum"):
        RemoteFile("a", ("file:///a",))
