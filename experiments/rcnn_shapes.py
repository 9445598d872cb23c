"""R-CNN (Girshick et al. 2014): selective-search proposals, warped crops, CNN features, per-class
linear SVMs and box regression, on the generated shapes set (64x64, 500 training / 300 test images).

Command:  python experiments/rcnn_shapes.py        (--smoke: seconds)
Result:   see docs/detection.md (measured on CPU, 2 shared cores).
"""

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np


def get_config() -> dict:
    """R-CNN on shapes: 500 training images, 64 proposals each, 32x32 crops, 600 CNN steps."""
    return {"train_images": 500, "test_images": 300, "image_size": 64, "num_proposals": 64, "crop_size": 32,
            "cnn_steps": 600, "batch_size": 128, "learning_rate": 1e-3, "seed": 0}


def main(argv=None):
    parser = argparse.ArgumentParser(description=get_config.__doc__)
    parser.add_argument("--out", default="runs/rcnn-shapes")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--cnn-steps", type=int, default=None)
    args = parser.parse_args(argv)
    cfg = get_config()
    for key in ("train_images", "cnn_steps"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if args.smoke:
        cfg.update(train_images=6, test_images=4, num_proposals=16, crop_size=16, cnn_steps=2, batch_size=16)

    import jax

    from jaxdl.data.shapes import make_shapes
    from jaxdl.detection.metrics import coco_evaluate, voc_map
    from jaxdl.detection.proposals import proposal_recall, proposals_for
    from jaxdl.detection.rcnn import fit_rcnn

    t0 = time.time()
    train = make_shapes(cfg["train_images"], image_size=cfg["image_size"], seed=0)
    test = make_shapes(cfg["test_images"], image_size=cfg["image_size"], seed=1)
    p_train = proposals_for(train.images, cfg["num_proposals"])
    p_test = proposals_for(test.images, cfg["num_proposals"])
    recall = proposal_recall(p_test, test.boxes, test.classes, 0.5)
    print(f"proposals: {time.time() - t0:.0f}s, test recall@0.5 {recall:.3f}")
    model = fit_rcnn(train, p_train, crop_size=cfg["crop_size"], cnn_steps=cfg["cnn_steps"],
                     batch_size=cfg["batch_size"], learning_rate=cfg["learning_rate"], seed=cfg["seed"])
    out = model.predict(test.images, p_test)
    dets = [{k: v[i] for k, v in out.items()} for i in range(len(test))]
    gts = [{"boxes": test.boxes[i], "classes": test.classes[i]} for i in range(len(test))]
    coco = coco_evaluate(dets, gts, test.num_classes)
    summary = {"model": "rcnn", "map50": voc_map(dets, gts, test.num_classes)["map"],
               "map50_11pt": voc_map(dets, gts, test.num_classes, use_11_point=True)["map"],
               "coco_ap": coco["AP"], "coco_ar100": coco["AR100"], "proposal_recall50": recall,
               "seconds": round(time.time() - t0, 1), "config": cfg, "device": jax.default_backend(),
               "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    print("eval " + json.dumps({k: v for k, v in summary.items() if k != "config"}))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    from jaxdl.train.io import write_json_atomic
    write_json_atomic(Path(args.out) / "summary.json", summary)
    return summary


if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
