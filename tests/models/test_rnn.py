"""Recurrent models: torch parity with random weights (<= 1e-5), the importer's errors, the classifiers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdl import models
from jaxdl.errors import ConfigError
from jaxdl.models.rnn import CharLanguageModel, SequenceClassifier, params_from_torch
from jaxdl.nn.recurrent import StackedRecurrent

F, H, T = 5, 6, 7


@pytest.mark.parametrize("cell,bidirectional", [("rnn", False), ("lstm", True), ("gru", True)])
def test_matches_torch_with_random_weights_and_lengths(cell, bidirectional):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    net = cls(F, H, num_layers=2, bidirectional=bidirectional, batch_first=True)
    with torch.no_grad():  # larger weights than torch's init so every gate is exercised away from 0.5
        for p in net.parameters():
            p.uniform_(-0.8, 0.8)
    x = torch.randn(3, T, F)
    lengths = torch.tensor([T, 4, 2])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, final = net(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    h_n = (final[0] if cell == "lstm" else final).detach().numpy()  # [layers * dirs, N, H]

    stack = StackedRecurrent(cell, H, num_layers=2, bidirectional=bidirectional)
    params = params_from_torch(net.state_dict(), cell, num_layers=2, bidirectional=bidirectional)
    carries, y = jax.jit(stack.apply)({"params": params}, jnp.asarray(x.numpy()), jnp.asarray(lengths.numpy()))
    np.testing.assert_allclose(y, out.detach().numpy(), atol=1e-5)
    k = 0
    for layer in range(2):
        for carry in (carries[layer] if bidirectional else (carries[layer],)):
            h = carry[0] if cell == "lstm" else carry
            np.testing.assert_allclose(h, h_n[k], atol=1e-5)
            if cell == "lstm":
                np.testing.assert_allclose(carry[1], final[1].detach().numpy()[k], atol=1e-5)
            k += 1


def test_importer_shapes_match_init_and_errors_name_the_key():
    torch = pytest.importorskip("torch")
    net = torch.nn.GRU(F, H, num_layers=1)
    imported = params_from_torch(net.state_dict(), "gru")
    init = StackedRecurrent("gru", H).init(jax.random.key(0), jnp.ones((1, T, F)))["params"]
    assert jax.tree_util.tree_map(jnp.shape, imported) == jax.tree_util.tree_map(jnp.shape, init)
    with pytest.raises(ConfigError, match="weight_ih_l1"):
        params_from_torch(net.state_dict(), "gru", num_layers=2)
    with pytest.raises(ConfigError, match=r"\[4\*H, F\]"):
        params_from_torch(net.state_dict(), "lstm")
    with pytest.raises(ConfigError, match="proj_size"):
        params_from_torch(torch.nn.LSTM(F, H, proj_size=2).state_dict(), "lstm")


def test_importer_works_without_torch_on_numpy_arrays():
    rng = np.random.default_rng(0)
    sd = {"rnn.weight_ih_l0": rng.normal(size=(H, F)), "rnn.weight_hh_l0": rng.normal(size=(H, H)),
          "rnn.bias_ih_l0": rng.normal(size=H), "rnn.bias_hh_l0": rng.normal(size=H)}
    p = params_from_torch(sd, "rnn", prefix="rnn.")
    np.testing.assert_allclose(p["layer0"]["forward"]["ih"]["kernel"], sd["rnn.weight_ih_l0"].T, rtol=1e-6)


def test_classifier_reads_image_rows_as_steps():
    """[N, H, W, C] is H steps of W*C features: the image model equals the sequence model on the reshape."""
    model = models.create("gru_classifier", hidden_size=8)
    x = jax.random.normal(jax.random.key(0), (2, 6, 5, 2))
    v = jax.jit(model.init)(jax.random.key(1), x)
    assert v["params"]["rnn"]["layer0"]["forward"]["ih"]["kernel"].shape == (10, 24)

    @jax.jit
    def both(v, x):
        feats = model.apply(v, x, features=("sequence", "pre_logits"))
        return model.apply(v, x), model.apply(v, x.reshape(2, 6, 10)), feats

    logits, logits_seq, feats = both(v, x)
    np.testing.assert_allclose(logits, logits_seq, atol=1e-6)
    assert feats["sequence"].shape == (2, 6, 8)
    np.testing.assert_allclose(feats["pre_logits"], feats["sequence"][:, -1], atol=1e-6)


def test_bidirectional_classifier_pre_logits_are_last_forward_and_first_backward():
    model = SequenceClassifier(cell="lstm", hidden_size=4, bidirectional=True)
    x = jax.random.normal(jax.random.key(0), (2, 5, 3))
    v = jax.jit(model.init)(jax.random.key(1), x)
    f = jax.jit(lambda v, x: model.apply(v, x, features=("sequence", "pre_logits")))(v, x)
    np.testing.assert_allclose(f["pre_logits"][:, :4], f["sequence"][:, -1, :4], atol=1e-6)
    np.testing.assert_allclose(f["pre_logits"][:, 4:], f["sequence"][:, 0, 4:], atol=1e-6)


def test_registered_sequence_classifiers():
    assert {"rnn_classifier", "lstm_classifier", "gru_classifier", "bilstm_classifier"} <= set(models.available("rnn"))
    assert not models.info("lstm_classifier").fixed_input  # trains on the data set's own size
    with pytest.raises(ConfigError, match="unknown recurrent cell"):
        SequenceClassifier(cell="elman").init(jax.random.key(0), jnp.ones((1, 4, 4, 1)))


def test_char_language_model_carry_continues_the_sequence():
    """Running two chunks with the carry passed on equals running the whole sequence at once."""
    lm = CharLanguageModel(vocab_size=11, embed_size=4, hidden_size=8, num_layers=2)
    tokens = jax.random.randint(jax.random.key(0), (2, 10), 0, 11)
    v = jax.jit(lm.init)(jax.random.key(1), tokens)

    @jax.jit
    def run(v, tokens):
        whole, _ = lm.apply(v, tokens)
        first, carry = lm.apply(v, tokens[:, :6])
        second, _ = lm.apply(v, tokens[:, 6:], carry)
        return whole, first, second

    whole, first, second = run(v, tokens)
    assert whole.shape == (2, 10, 11)
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), whole, atol=1e-5)


def test_the_one_trainer_fits_a_sequence_classifier_on_digits(tmp_path):
    """`jaxdl train --model gru_classifier --dataset digits`: 8x8 digits read as 8 steps of 8 pixels."""
    from jaxdl.train import TrainConfig, fit

    config = TrainConfig(model="gru_classifier", dataset="digits", epochs=1, batch_size=64, learning_rate=5e-3,
                         steps_per_epoch=22, model_options={"hidden_size": 32}, optimizer_options={"clip_norm": 1.0})
    summary = fit(config, tmp_path / "run", progress=False, log=lambda s: None)
    assert summary["epochs"] == 1 and summary["test_accuracy"] > 0.3, summary["test_accuracy"]  # chance is 0.1


def test_registered_counts_are_torchs():
    torch = pytest.importorskip("torch")
    for name, cls, bi in (("rnn_classifier", torch.nn.RNN, False), ("lstm_classifier", torch.nn.LSTM, False),
                          ("gru_classifier", torch.nn.GRU, False), ("bilstm_classifier", torch.nn.LSTM, True)):
        net = cls(28, 128, bidirectional=bi)
        head = torch.nn.Linear(256 if bi else 128, 10)
        count = sum(p.numel() for p in net.parameters()) + sum(p.numel() for p in head.parameters())
        assert models.info(name).num_params == count, name
