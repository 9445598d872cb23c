"""Captioning data: the generated shapes set, Flickr8k / COCO readers on small generated files, the vocabulary."""

import json

import numpy as np
import pytest

from jaxdl.data.captions import (BOS, EOS, PAD, UNK, WordVocab, read_coco_captions, read_flickr8k_tokens,
                                 shapes_captions, tokenize)
from jaxdl.errors import CorruptFileError, DatasetNotFoundError


def test_shapes_set_is_deterministic_and_captions_match_the_pixels():
    a, b, c = shapes_captions(40, seed=3), shapes_captions(40, seed=3), shapes_captions(40, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.captions == b.captions and a.captions != c.captions
    assert a.images.shape == (40, 32, 32, 3) and a.images.dtype == np.uint8
    colours = {"red": 0, "green": 1, "blue": 2}
    for image, refs in zip(a.images, a.captions):
        assert len(refs) == 3
        first = refs[0].split()
        if "at" in first:  # one shape: its colour's channel dominates the bright pixels of its quadrant
            vert, horiz = first[-2], first[-1]
            quad = image[:16] if vert == "top" else image[16:]
            quad = quad[:, :16] if horiz == "left" else quad[:, 16:]
            colour = first[2]
            bright = quad[quad.max(-1) > 100]
            assert len(bright) > 10, refs
            if colour in colours:
                assert np.argmax(bright.mean(0)) == colours[colour], refs


def test_vocab_encode_decode_and_unknown_words():
    vocab = WordVocab.build(["A red circle.", "a blue circle", "a circle"], min_count=2)
    assert vocab.words[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert vocab.words[4:] == ("a", "circle")  # "red", "blue" seen once: dropped at min_count=2
    ids = vocab.encode("A red circle", max_len=5)
    assert ids.tolist() == [BOS, 4, UNK, 5, EOS, PAD, PAD]
    assert vocab.decode(ids) == ["a", "<unk>", "circle"]
    assert vocab.encode("a a a a a a a", max_len=3).tolist() == [BOS, 4, 4, 4, EOS]
    assert tokenize("Two dogs, running!") == ["two", "dogs", "running"]


def test_flickr8k_reader(tmp_path):
    path = tmp_path / "Flickr8k.token.txt"
    path.write_text("1000_a.jpg#0\tA child in a pink dress .\n1000_a.jpg#1\tA girl going into a building .\n\n"
                    "2000_b.jpg#0\tA black dog .\n")
    assert read_flickr8k_tokens(path) == {"1000_a.jpg": ["A child in a pink dress .", "A girl going into a building ."],
                                          "2000_b.jpg": ["A black dog ."]}
    bad = tmp_path / "bad.txt"
    bad.write_text("1000_a.jpg#0\tfine\n1000_a.jpg A child without a tab\n")
    with pytest.raises(CorruptFileError, match=r"bad.txt, line 2"):
        read_flickr8k_tokens(bad)
    with pytest.raises(DatasetNotFoundError, match="missing.txt"):
        read_flickr8k_tokens(tmp_path / "missing.txt")


def test_coco_reader(tmp_path):
    path = tmp_path / "captions_val2014.json"
    data = {"images": [{"id": 7, "file_name": "COCO_7.jpg"}, {"id": 9, "file_name": "COCO_9.jpg"}],
            "annotations": [{"image_id": 7, "id": 1, "caption": "A man riding a horse. "},
                            {"image_id": 7, "id": 2, "caption": "A horse and rider"},
                            {"image_id": 9, "id": 3, "caption": "Two cats"}]}
    path.write_text(json.dumps(data))
    assert read_coco_captions(path) == {"COCO_7.jpg": ["A man riding a horse.", "A horse and rider"],
                                        "COCO_9.jpg": ["Two cats"]}
    data["annotations"].append({"image_id": 11, "caption": "orphan"})
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptFileError, match=r"captions_val2014.json: annotations\[3\] refers to image id 11"):
        read_coco_captions(path)
    path.write_text("{not json")
    with pytest.raises(CorruptFileError, match="captions_val2014.json is not valid JSON"):
        read_coco_captions(path)
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(CorruptFileError, match="'images' and 'annotations'"):
        read_coco_captions(path)
