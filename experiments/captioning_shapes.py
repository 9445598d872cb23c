"""Show and Tell captioning on the generated shapes set: a zoo CNN encoder + LSTM decoder, BLEU-1..4.

Command:  python experiments/captioning_shapes.py [--encoder resnet20] [--epochs N] [--out runs/captioning-shapes]
Data:     jaxdl.data.captions.shapes_captions: 6,000 training images (seed 0), 500 test images (seed 1),
          3 reference captions each; no files needed.
Result:   corpus BLEU-1..4 of greedy and beam-search (beam 3) captions on the test images against their
          3 references, sample captions, OUT/summary.json and OUT/samples.png; numbers in docs/rnn.md.
"""


import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl import optim
from jaxdl.data.captions import WordVocab, shapes_captions
from jaxdl.errors import JaxdlError
from jaxdl.models.captioning import ShowAndTell, caption_loss, generate
from jaxdl.train.bleu import bleu_scores
from jaxdl.train.experiment import Option, run_script
from jaxdl.train.io import write_json_atomic, write_jsonl_atomic
from jaxdl.train.state import TrainState
from jaxdl.train.steps import step_keys


@dataclasses.dataclass(frozen=True)
class CaptionConfig:
    encoder: str = "resnet20"
    encoder_options: tuple[tuple[str, object], ...] = ()
    train_images: int = 6000
    test_images: int = 500
    max_words: int = 12
    embed_size: int = 64
    hidden_size: int = 128
    dropout_rate: float = 0.1
    batch_size: int = 64
    epochs: int = 6
    learning_rate: float = 2e-3
    clip_norm: float = 1.0
    beam_size: int = 3
    seed: int = 0
    num_samples: int = 8


def get_config() -> CaptionConfig:
    """ResNet-20 encoder (CIFAR ResNet, trained from scratch) + LSTM 128; Adam 2e-3 cosine, clip 1.0, 6 epochs."""
    return CaptionConfig()


def smoke(config: CaptionConfig) -> CaptionConfig:
    # A one-layer MLP "encoder" keeps the smoke run to seconds; the path (feature tap -> LSTM) is the same.
    return dataclasses.replace(config, encoder="mlp", encoder_options=(("hidden_sizes", (16,)),), train_images=64, test_images=16, embed_size=8,
                               hidden_size=16, batch_size=16, epochs=1, num_samples=2)


def to_input(images: np.ndarray) -> jax.Array:
    return jnp.asarray(images, jnp.float32) / 255.0 - 0.1  # dark images: mean pixel about 0.1


def caption_train_step(state: TrainState, images, words):
    """Teacher forcing: inputs ``words[:, :-1]`` (``<bos> w1 ..``), targets ``words[:, 1:]``."""
    _, dropout_key = step_keys(state)

    def loss_fn(params):
        logits, updates = state.apply_fn({"params": params, "batch_stats": state.batch_stats}, images,
                                         words[:, :-1], train=True, rngs={"dropout": dropout_key},
                                         mutable=["batch_stats"])
        loss, count = caption_loss(logits, words[:, 1:])
        return loss, (count, updates.get("batch_stats", state.batch_stats))

    (loss, (count, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state.apply_gradients(grads, batch_stats), {"loss": loss, "words": count}


def run(config: CaptionConfig, out: Path, log=print) -> dict:
    train = shapes_captions(config.train_images, seed=config.seed)
    test = shapes_captions(config.test_images, seed=config.seed + 1)
    vocab = WordVocab.build(c for refs in train.captions for c in refs)
    encoded = np.stack([[vocab.encode(c, config.max_words) for c in refs] for refs in train.captions])  # [N, 3, L+2]
    model = ShowAndTell(vocab.size, config.encoder, tuple(config.encoder_options), embed_size=config.embed_size, hidden_size=config.hidden_size,
                        dropout_rate=config.dropout_rate)
    steps_per_epoch = len(train) // config.batch_size
    lr = optim.schedule("cosine", learning_rate=config.learning_rate, total_steps=steps_per_epoch * config.epochs)
    tx = optim.optimizer("adam", lr, clip_norm=config.clip_norm)
    base = jax.random.PRNGKey(config.seed)
    variables = jax.jit(model.init)(jax.random.fold_in(base, 0), to_input(train.images[:1]),
                                    jnp.asarray(encoded[:1, 0, :-1]))
    state = TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                       batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(variables["params"]),
                       rng=jax.random.fold_in(base, 1), apply_fn=model.apply, tx=tx)
    step = jax.jit(caption_train_step, donate_argnums=0)
    out.mkdir(parents=True, exist_ok=True)
    history = []
    start = time.perf_counter()
    for epoch in range(config.epochs):
        rng = np.random.default_rng([config.seed, epoch])  # data order and reference choice: f(seed, epoch)
        order = rng.permutation(len(train))
        which = rng.integers(0, encoded.shape[1], len(train))
        losses, t0 = [], time.perf_counter()
        for b in range(steps_per_epoch):
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            state, metrics = step(state, to_input(train.images[idx]), jnp.asarray(encoded[idx, which[idx]]))
            losses.append(float(metrics["loss"]))
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "seconds": time.perf_counter() - t0})
        write_jsonl_atomic(out / "metrics.jsonl", history)
        log(f"epoch {epoch + 1}/{config.epochs} | train loss {history[-1]['train_loss']:.4f} per word | "
            f"{len(train) / history[-1]['seconds']:.0f} img/s")

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    decode = jax.jit(functools.partial(generate, model, max_len=config.max_words + 1), static_argnames=("beam_size",))
    references = [[r.split() for r in refs] for refs in test.captions]
    results, samples = {}, []
    for name, beam in (("greedy", 1), (f"beam{config.beam_size}", config.beam_size)):
        tokens = []
        for s in range(0, len(test), 100):
            tokens.append(np.asarray(decode(variables, to_input(test.images[s:s + 100]), beam_size=beam)[0]))
        words = [vocab.decode(t) for t in np.concatenate(tokens)]
        scores = bleu_scores(words, references)
        exact = float(np.mean([" ".join(w) in refs for w, refs in zip(words, test.captions)]))
        results[name] = {**{k: scores[k] for k in ("bleu1", "bleu2", "bleu3", "bleu4")}, "exact_match": exact}
        log(f"{name:7s} BLEU-1 {scores['bleu1']:.3f}  BLEU-2 {scores['bleu2']:.3f}  BLEU-3 {scores['bleu3']:.3f}  "
            f"BLEU-4 {scores['bleu4']:.3f}  exact match with a reference {exact:.1%}")
        if name != "greedy":
            samples = [{"generated": " ".join(w), "references": list(refs)}
                       for w, refs in zip(words[:config.num_samples], test.captions[:config.num_samples])]
    for s in samples:
        log(f"  {s['generated']!r:55s} refs: {s['references'][0]!r}")
    _save_samples(test.images[:config.num_samples], samples, out / "samples.png")
    summary = {"config": dataclasses.asdict(config), "vocab_size": vocab.size, "epochs": config.epochs,
               "results": results, "samples": samples, "history": history,
               "seconds": time.perf_counter() - start, "device": str(jax.devices()[0])}
    write_json_atomic(out / "summary.json", summary)
    log(f"outputs in {out}")
    return summary


def _save_samples(images: np.ndarray, samples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(images))
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, s in zip(axes.ravel(), images, samples):
        ax.imshow(image, interpolation="nearest")
        words = s["generated"].split()
        ax.set_title(" ".join(words[:5]) + ("\n" + " ".join(words[5:]) if len(words) > 5 else ""), fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


def check_smoke(summary: dict) -> None:
    for r in summary["results"].values():
        assert all(0.0 <= r[k] <= 1.0 for k in ("bleu1", "bleu2", "bleu3", "bleu4", "exact_match"))
    assert len(summary["samples"]) == summary["config"]["num_samples"]


def main(argv=None):
    # An unknown encoder name is a ValueError listing close names: bad input too.
    return run_script(get_config, run, "captioning-shapes", argv, smoke=smoke, errors=(JaxdlError, ValueError),
                      options=[Option("--encoder", str, "any registered model name (its pre_logits tap is used)",
                                      also=(("encoder_options", ()),)),
                               Option("--epochs", int)])

if __name__ == "__main__":
    from jaxdl.runtime import use_fast_allocator

    use_fast_allocator()  # CPU: re-run once with tcmalloc when installed (JAXDL_ALLOCATOR=system: glibc)
    main()
