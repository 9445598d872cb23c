"""torchvision key maps, one per family, as data.

A key map says which torchvision module (the part of a state-dict key before ``.weight``,
``.bias``, ``.running_mean`` ...) holds the weights of which jaxdl module (the path of a flax
parameter without its leaf name). It is a tuple of :class:`Rule` s, each a pair of templates:

    Rule("layer{s}.{b}.conv{i}", "stage{s}_block{b}/conv{i}")

``{name}`` is a field that matches a number (or, written ``{name:w}``, a word); ``{j+1}`` in the
torch template means the torch number is the jaxdl number plus one (DenseNet counts its layers
from 1, jaxdl from 0). The same rule runs both ways, so import and export share one table.

Families whose torchvision modules are numbered ``nn.Sequential`` entries (AlexNet, VGG,
SqueezeNet, MobileNet v2) get their literal rules from the same configuration tables the jaxdl
model is built from (``vgg.CONFIGS``, ``squeezenet.CONFIGS``, ``mobilenet.V2_SETTINGS``), so one
function covers every depth of the family.

``flattened`` names the fully connected layers that follow a flatten of a spatial map: torch
flattens ``C, H, W``, jaxdl (NHWC) ``H, W, C``, so their input rows are permuted on import. The
value is the ``(H, W)`` of the map that is flattened (AlexNet 6x6, VGG 7x7, GoogLeNet aux 4x4).

``optional`` are torch modules the source may carry that a model built without them (GoogLeNet
or Inception v3 with ``aux_logits=False``) does not need; they are dropped, and counted in the
import report, only when the model has no parameter for them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable

from jaxdl.models import googlenet as _googlenet  # noqa: F401  (registers the models)
from jaxdl.models import mobilenet as _mobilenet
from jaxdl.models import squeezenet as _squeezenet
from jaxdl.models import vgg as _vgg

__all__ = ["Rule", "KeyMap", "KEYMAPS", "keymap_for", "SUPPORTED"]

_FIELD = re.compile(r"\{(\w+)(?::(w))?(?:\+(\d+))?\}")


@dataclasses.dataclass(frozen=True)
class Rule:
    """One torch-module template and the jaxdl-module template it corresponds to."""

    torch: str
    jax: str

    def _match(self, template: str, name: str) -> dict[str, str] | None:
        out, pos = [], 0
        for m in _FIELD.finditer(template):
            out.append(re.escape(template[pos:m.start()]))
            out.append(f"(?P<{m.group(1)}>{'[A-Za-z0-9_]+' if m.group(2) else '[0-9]+'})")
            pos = m.end()
        out.append(re.escape(template[pos:]))
        m = re.fullmatch("".join(out), name)
        return None if m is None else m.groupdict()

    def _offsets(self) -> dict[str, int]:
        # Offsets are written on the torch side only: torch number = jaxdl number + offset.
        return {m.group(1): int(m.group(3)) for m in _FIELD.finditer(self.torch) if m.group(3)}

    @staticmethod
    def _fill(template: str, values: dict[str, str]) -> str:
        return _FIELD.sub(lambda m: values[m.group(1)], template)

    def to_jax(self, torch_module: str) -> str | None:
        values = self._match(self.torch, torch_module)
        if values is None:
            return None
        for key, offset in self._offsets().items():
            values[key] = str(int(values[key]) - offset)
            if int(values[key]) < 0:
                return None
        return self._fill(self.jax, values)

    def to_torch(self, jax_module: str) -> str | None:
        values = self._match(self.jax, jax_module)
        if values is None:
            return None
        for key, offset in self._offsets().items():
            values[key] = str(int(values[key]) + offset)
        return self._fill(self.torch, values)


@dataclasses.dataclass(frozen=True)
class KeyMap:
    """The key map of one family: rules (static, or built from the model's own fields)."""

    family: str
    rules: tuple[Rule, ...] = ()
    rules_for: Callable[[Any], tuple[Rule, ...]] | None = None
    flattened: tuple[tuple[str, tuple[int, int]], ...] = ()
    optional: tuple[str, ...] = ()  # regexes of torch modules that may be dropped (aux heads)

    def rules_of(self, model: Any) -> tuple[Rule, ...]:
        return self.rules + (self.rules_for(model) if self.rules_for is not None else ())

    def to_jax(self, model: Any, torch_module: str) -> str | None:
        for rule in self.rules_of(model):
            target = rule.to_jax(torch_module)
            if target is not None:
                return target
        return None

    def to_torch(self, model: Any, jax_module: str) -> str | None:
        for rule in self.rules_of(model):
            target = rule.to_torch(jax_module)
            if target is not None:
                return target
        return None

    def is_optional(self, torch_module: str) -> bool:
        return any(re.fullmatch(p, torch_module) for p in self.optional)


R = Rule

# ---------------------------------------------------------------------------------------------
# Literal tables built from the model's configuration (torchvision numbers nn.Sequential entries).


def _alexnet_rules(model: Any) -> tuple[Rule, ...]:
    # torchvision features: conv(0) relu pool conv(3) relu pool conv(6) relu conv(8) relu conv(10) relu pool;
    # classifier: dropout fc(1) relu dropout fc(4) relu fc(6).
    convs = {0: "conv1", 3: "conv2", 6: "conv3", 8: "conv4", 10: "conv5"}
    return tuple(R(f"features.{i}", name) for i, name in convs.items()) + (
        R("classifier.1", "fc6"), R("classifier.4", "fc7"), R("classifier.6", "head"))


def _vgg_rules(model: Any) -> tuple[Rule, ...]:
    # torchvision make_layers: per conv "conv [bn] relu", per block one max pool, counted from 0.
    rules, index = [], 0
    for b, block in enumerate(model.blocks, start=1):
        for i, layer in enumerate(block, start=1):
            if _vgg.parse_layer(layer)[0] != "conv":
                raise ValueError(f"VGG layer {layer!r} has no torchvision counterpart")
            rules.append(R(f"features.{index}", f"block{b}_conv{i}"))
            if model.batch_norm:
                rules.append(R(f"features.{index + 1}", f"block{b}_bn{i}"))
            index += 3 if model.batch_norm else 2
        index += 1  # the block's max pool
    rules += [R("classifier.0", "fc6"), R("classifier.3", "fc7"), R("classifier.6", "head")]
    return tuple(rules)


def _squeezenet_rules(model: Any) -> tuple[Rule, ...]:
    # torchvision features: conv(0) relu(1), then per stage a max pool and its Fire modules.
    _, _, stages = _squeezenet.CONFIGS[model.version]
    rules, index, fire = [R("features.0", "conv1")], 2, 2
    for stage in stages:
        index += 1  # max pool
        for _ in stage:
            rules.append(R(f"features.{index}.{{part:w}}", f"fire{fire}/{{part:w}}"))
            index, fire = index + 1, fire + 1
    rules.append(R("classifier.1", "head"))  # classifier: dropout(0) conv(1) relu avgpool
    return tuple(rules)


def _mobilenet_v2_rules(model: Any) -> tuple[Rule, ...]:
    # features.0 = conv-bn-relu6 stem, features.1..17 the inverted residuals, features.18 the 1x1 to 1280.
    rules = [R("features.0.0", "stem_conv"), R("features.0.1", "stem_bn")]
    index = 1
    for stage, (t, _, n, _) in enumerate(model.settings, start=1):
        for block in range(1, n + 1):
            p = f"features.{index}.conv"
            j = f"stage{stage}_block{block}"
            if t == 1:  # no expansion: conv.0 = dw conv-bn-relu6, conv.1 = project conv, conv.2 = its BN
                parts = (("0.0", "dw_conv"), ("0.1", "dw_bn"), ("1", "project_conv"), ("2", "project_bn"))
            else:
                parts = (("0.0", "expand_conv"), ("0.1", "expand_bn"), ("1.0", "dw_conv"), ("1.1", "dw_bn"),
                         ("2", "project_conv"), ("3", "project_bn"))
            rules += [R(f"{p}.{tp}", f"{j}/{jp}") for tp, jp in parts]
            index += 1
    rules += [R(f"features.{index}.0", "last_conv"), R(f"features.{index}.1", "last_bn"),
              R("classifier.1", "head")]
    return tuple(rules)


# ---------------------------------------------------------------------------------------------
# Families.

_RESNET = KeyMap("resnet", rules=(
    R("conv1", "stem_conv"), R("bn1", "stem_bn"),
    R("layer{s}.{b}.conv{i}", "stage{s}_block{b}/conv{i}"),
    R("layer{s}.{b}.bn{i}", "stage{s}_block{b}/bn{i}"),
    R("layer{s}.{b}.downsample.0", "stage{s}_block{b}/shortcut_conv"),
    R("layer{s}.{b}.downsample.1", "stage{s}_block{b}/shortcut_bn"),
    R("fc", "head"),
))

_DENSENET = KeyMap("densenet", rules=(
    R("features.conv0", "stem_conv"), R("features.norm0", "stem_bn"),
    R("features.denseblock{i}.denselayer{j+1}.{part:w}", "stage{i}_layer{j}/{part:w}"),
    R("features.transition{i}.{part:w}", "transition{i}/{part:w}"),
    R("features.norm5", "final_norm"), R("classifier", "head"),
))

# GoogLeNet and Inception v3: torchvision's BasicConv2d holds .conv and .bn; Sequential branches
# ("branch2.0") are "branch2_0" in jaxdl; the aux heads are aux1/aux2 (GoogLeNet) and AuxLogits.
_GOOGLENET = KeyMap("googlenet", rules=(
    R("conv{i}.{part:w}", "conv{i}/{part:w}"),
    R("inception{m:w}.branch{b}.{part:w}", "inception{m:w}/branch{b}/{part:w}"),
    R("inception{m:w}.branch{b}.{k}.{part:w}", "inception{m:w}/branch{b}_{k}/{part:w}"),
    R("aux{a}.conv.{part:w}", "aux{a}_head/conv/{part:w}"),
    R("aux{a}.fc{i}", "aux{a}_head/fc{i}"),
    R("fc", "head"),
), flattened=(("aux1_head/fc1", (4, 4)), ("aux2_head/fc1", (4, 4))), optional=(r"aux[12]\..*",))

_INCEPTION_V3 = KeyMap("inception_v3", rules=(
    R("{block:w}.{part:w}", "{block:w}/{part:w}"),          # Conv2d_1a_3x3.conv, AuxLogits.fc
    R("{block:w}.{branch:w}.{part:w}", "{block:w}/{branch:w}/{part:w}"),  # Mixed_5b.branch1x1.conv
    R("fc", "head"),
), optional=(r"AuxLogits\..*",))

_ALEXNET = KeyMap("alexnet", rules_for=_alexnet_rules, flattened=(("fc6", (6, 6)),))
_VGG = KeyMap("vgg", rules_for=_vgg_rules, flattened=(("fc6", (7, 7)),))
_SQUEEZENET = KeyMap("squeezenet", rules_for=_squeezenet_rules)
_MOBILENET_V2 = KeyMap("mobilenet_v2", rules_for=_mobilenet_v2_rules)

# Every jaxdl model that has a torchvision counterpart with the same architecture.
KEYMAPS: dict[str, KeyMap] = {
    "alexnet": _ALEXNET,
    **{f"vgg{d}{bn}": _VGG for d in (11, 13, 16, 19) for bn in ("", "_bn")},
    "googlenet": _GOOGLENET,
    "inception_v3": _INCEPTION_V3,
    **{f"resnet{d}": _RESNET for d in (18, 34, 50, 101, 152)},
    "wide_resnet50_2": _RESNET, "wide_resnet101_2": _RESNET,
    "resnext50_32x4d": _RESNET, "resnext101_32x8d": _RESNET,
    **{f"densenet{d}": _DENSENET for d in (121, 161, 169, 201)},
    "squeezenet1_0": _SQUEEZENET, "squeezenet1_1": _SQUEEZENET,
    "mobilenet_v2": _MOBILENET_V2,
}
SUPPORTED: tuple[str, ...] = tuple(sorted(KEYMAPS))


def keymap_for(name: str) -> KeyMap | None:
    return KEYMAPS.get(name)
