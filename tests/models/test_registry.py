"""The model registry: create / available / info / register and their errors."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxdl import models
from jaxdl.models import registry


class _Tiny(nn.Module):
    num_classes: int = 3
    width: int = 4

    @nn.compact
    def __call__(self, x, train: bool = False, features=None):
        x = nn.Dense(self.width, name="body")(x.reshape((x.shape[0], -1)))
        return x if self.num_classes == 0 else nn.Dense(self.num_classes, name="head")(x)


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry, so test registrations vanish afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def test_available_info_create():
    names = models.available()
    assert names == sorted(names) and {"perceptron", "mlp", "lenet5"} <= set(names)
    assert models.available("lenet") == ["lenet5"]
    assert {"lenet", "mlp", "perceptron"} <= set(models.families())
    entry = models.info("lenet5")
    assert (entry.name, entry.input_shape, entry.num_classes, entry.family) == ("lenet5", (32, 32, 1), 10, "lenet")
    model = models.create("lenet5")
    assert isinstance(model, nn.Module) and model.num_classes == 10
    assert models.create("lenet5", num_classes=7).num_classes == 7
    assert models.create("mlp", hidden_sizes=(5,), activation="tanh").hidden_sizes == (5,)


def test_every_entry_is_well_formed():
    for name in models.available():
        entry = models.info(name)
        assert entry.name == name and len(entry.input_shape) == 3 and entry.paper and entry.family
        assert entry.num_classes > 0
        assert entry.smoke_input_shape is None or len(entry.smoke_input_shape) == 3
        assert entry.num_params is None or entry.num_params > 0


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match="lenet5") as err:
        models.create("lenet")
    assert "did you mean" in str(err.value)
    with pytest.raises(ValueError, match="unknown model 'percepton'.*perceptron"):
        models.info("percepton")
    with pytest.raises(ValueError, match="available"):
        models.info("zzzzzzzz")


def test_unknown_override_lists_options():
    with pytest.raises(ValueError, match="hiden_sizes") as err:
        models.create("mlp", hiden_sizes=(3,))
    message = str(err.value)
    for option in ("hidden_sizes", "activation", "dropout_rate", "batch_norm", "dtype"):
        assert option in message


def test_num_classes_zero_and_negative():
    model = models.create("mlp", num_classes=0)
    x = jnp.ones((2, 28, 28, 1))
    out, variables = jax.eval_shape(lambda k: model.init_with_output(k, x), jax.random.key(0))
    assert out.shape == (2, 64) and "head" not in variables["params"]
    with pytest.raises(ValueError, match="num_classes must be >= 0"):
        models.create("mlp", num_classes=-1)


def test_register_and_reregister(scratch_registry):
    entry = scratch_registry.register("tiny_test", functools.partial(_Tiny, width=2), input_shape=(2, 2, 1),
                                      family="tinyfam", paper="none", num_classes=3,
                                      smoke_overrides={"width": 1})
    assert entry.smoke_overrides == (("width", 1),)
    assert "tiny_test" in models.available() and models.available("tinyfam") == ["tiny_test"]
    assert models.create("tiny_test").width == 2 and models.create("tiny_test", width=5).width == 5
    with pytest.raises(ValueError, match="already registered.*tinyfam"):
        scratch_registry.register("tiny_test", _Tiny, input_shape=(2, 2, 1), family="other", paper="none")
    assert models.info("tiny_test") is entry  # the first registration is kept
    with pytest.raises(ValueError, match="already registered"):
        scratch_registry.register("lenet5", _Tiny, input_shape=(2, 2, 1), family="x", paper="none")
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        scratch_registry.register("bad_shape", _Tiny, input_shape=(2, 2), family="x", paper="none")
    assert "bad_shape" not in models.available()


def test_scratch_registrations_do_not_leak():
    assert "tiny_test" not in models.available()
