"""Adapter capabilities instead of ``isinstance``: the protocol answers what other layers ask.

Outside ``src/simec/models/`` no module may test an adapter's class against a Hugging Face
adapter (``isinstance``/``issubclass`` with an ``HF...Adapter``, or ``type(x) is/== ...``): it
asks ``modality``, ``task``, ``tokenizer``, ``patch_size``, ``read_input``,
``embedding_bounds`` ... (``simec.models.base``) or takes a typed view
(``simec.models.capabilities``). The scan reads the ``ast`` of every module (multi-line calls,
tuples of classes, ``models.HFxAdapter`` attributes and import aliases included); a regex pass
checks that the ast scan misses nothing a grep would see.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from simec import InputError, ModelError, TorchAdapter
from simec.explore.box import embedding_bounds
from simec.models import (
    HFImageClassifierAdapter,
    HFMaskedLMAdapter,
    HFSequenceClassifierAdapter,
    ModelAdapter,
    PreparedInput,
    as_image_model,
    as_masked_lm,
    as_text_model,
)
from tests.conftest import TEXT, make_tokenizer, tiny_bert, tiny_vit
from tests.interpret.test_decode_text import tiny_mlm

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "simec"
MODELS = SRC / "models"
HF_ADAPTER = re.compile(r"^HF\w*Adapter$")
GREP = re.compile(r"(isinstance|issubclass)\([^)]*HF[A-Za-z]*Adapter")


def _aliases(tree: ast.AST) -> set[str]:
    """Local names bound to an HF adapter class by ``import ... as``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if HF_ADAPTER.match(alias.name):
                    names.add(alias.asname or alias.name)
    return names


def _is_hf_class(node: ast.AST, aliases: set[str]) -> bool:
    if isinstance(node, ast.Tuple):
        return any(_is_hf_class(e, aliases) for e in node.elts)
    if isinstance(node, ast.Name):
        return bool(HF_ADAPTER.match(node.id)) or node.id in aliases
    if isinstance(node, ast.Attribute):
        return bool(HF_ADAPTER.match(node.attr))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # "HFxAdapter" forward refs
        return bool(HF_ADAPTER.match(node.value))
    return False


def _is_type_call(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "type"


def class_checks(source: str, where: str = "<snippet>") -> list[str]:
    """Every test of an object's class against an HF adapter class in ``source``."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        hit = False
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("isinstance", "issubclass") and len(node.args) == 2:
                hit = _is_hf_class(node.args[1], aliases)
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            ops = (ast.Is, ast.IsNot, ast.Eq, ast.NotEq)
            if any(isinstance(op, ops) for op in node.ops) and any(map(_is_type_call, sides)):
                hit = any(_is_hf_class(s, aliases) for s in sides)
        if hit:
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


#: capabilities every adapter has (``ModelAdapter`` defaults): ``hasattr`` on them is always True
CAPABILITIES = frozenset(
    "modality task tokenizer patch_size model read_input embedding_bounds".split()
)


def capability_probes(source: str, where: str = "<snippet>") -> list[str]:
    """``hasattr(x, "<capability>")``: always True now that the protocol has a default, so a
    probe like ``hasattr(adapter, "tokenizer")`` no longer tells a text model from the rest."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "hasattr" and len(node.args) == 2:
                name = node.args[1]
                if isinstance(name, ast.Constant) and name.value in CAPABILITIES:
                    found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def _outside_models() -> list[Path]:
    return [p for p in sorted(SRC.rglob("*.py")) if MODELS not in p.parents]


SYNTHETIC = """
from simec.models import HFImageClassifierAdapter as Vision
from simec import models

def f(adapter, other):
    if isinstance(adapter, HFSequenceClassifierAdapter):
        pass
    ok = isinstance(
        adapter,
        (str, HFMaskedLMAdapter),
    )
    if isinstance(adapter, models.HFImageClassifierAdapter):
        pass
    if isinstance(other, Vision) or issubclass(type(other), HFAdapter):
        pass
    if type(adapter) is HFSequenceClassifierAdapter:
        pass
    # not class checks of HF adapters:
    isinstance(adapter, ModelAdapter)
    isinstance(adapter, str)
    text = "isinstance(adapter, HFAdapter)"  # a string, not a call
    return adapter.modality == "image"
"""


def test_the_scanner_flags_every_form_of_class_check():
    found = class_checks(SYNTHETIC)
    lines = sorted(int(f.split(":")[1]) for f in found)
    # direct, multi-line tuple, attribute, alias, issubclass, type() is
    assert lines == [6, 8, 12, 14, 14, 16], found
    assert all(f.startswith("<snippet>:") for f in found)
    assert class_checks("isinstance(x, ModelAdapter)\nx.modality == 'text'\n") == []
    probes = "hasattr(adapter, 'tokenizer')\nhasattr(adapter, 'pixel_values')\n"
    assert capability_probes(probes) == ["<snippet>:1: hasattr(adapter, 'tokenizer')"]


def test_the_regex_pass_sees_nothing_the_ast_scan_misses():
    grep = GREP.findall(SYNTHETIC)
    assert len(grep) >= 4  # the one-line forms (not the multi-line tuple)
    for path in _outside_models():
        source = path.read_text()
        ast_lines = {int(f.split(":")[1]) for f in class_checks(source, str(path))}
        for i, line in enumerate(source.splitlines(), 1):
            if GREP.search(line) and not line.lstrip().startswith("#"):
                assert i in ast_lines, f"{path}:{i}: the regex sees a check the ast scan missed"


def test_no_isinstance_of_a_hugging_face_adapter_outside_models():
    found = []
    for path in _outside_models():
        source, where = path.read_text(), str(path.relative_to(ROOT))
        found += class_checks(source, where) + capability_probes(source, where)
    assert not found, (
        "ask the adapter's capabilities (simec.models.base: modality, task, tokenizer, "
        "patch_size, read_input, embedding_bounds; simec.models.capabilities: as_image_model, "
        "as_text_model, as_masked_lm) instead of its class:\n" + "\n".join(found)
    )


# -- the protocol's capabilities on the tiny models ------------------------------------------


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x).sum(0)


def test_torch_adapter_defaults():
    module = _Linear()
    adapter = TorchAdapter(module)
    assert adapter.modality == "tensor" and adapter.task == "classifier"
    assert adapter.tokenizer is None and adapter.patch_size is None
    assert adapter.model is module
    assert TorchAdapter(lambda x: x.sum(0)).model is None  # a plain function wraps no module
    assert adapter.read_input("anything.png") == "anything.png"
    with pytest.raises(ModelError, match=r"embedding-bounds.*TorchAdapter.*box=\(lower, upper\)"):
        adapter.embedding_bounds()
    assert as_image_model(adapter) is None
    assert as_text_model(adapter) is None
    assert as_masked_lm(adapter) is None


def test_vision_adapter_capabilities(image):
    model = tiny_vit()
    adapter = HFImageClassifierAdapter(model, dtype="float64")
    assert adapter.modality == "image" and adapter.task == "classifier"
    assert adapter.tokenizer is None and adapter.patch_size == 2 and adapter.model is model
    assert adapter.read_input("digit.png") == "digit.png"  # the adapter reads the path itself
    assert as_image_model(adapter) is adapter
    assert as_text_model(adapter) is None and as_masked_lm(adapter) is None
    pixels = adapter.with_space("pixels")
    assert pixels.modality == "image" and pixels.patch_size == 2


def test_headless_vision_model_is_a_backbone():
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        image_size=8,
        patch_size=2,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    adapter = HFImageClassifierAdapter(ViTModel(config).eval())
    assert adapter.modality == "image" and adapter.task == "backbone"


def test_patch_embedding_reproduces_the_models_embeddings(image):
    adapter = HFImageClassifierAdapter(
        tiny_vit(), image_mean=[0.5], image_std=[0.25], dtype="float64"
    )
    affine = adapter.patch_embedding()
    prepared = adapter.prepare(image)  # x0: the embeddings module's own output
    pixels = adapter.patchify(prepared.model_inputs["pixel_values"][0])
    assert affine.weight.shape == (16, 4) and affine.weight.dtype == torch.float64
    assert affine.bias is not None and affine.position is not None and affine.cls is not None
    patches = pixels @ affine.weight.T + affine.bias + affine.position[1:]
    torch.testing.assert_close(prepared.embeddings[1:], patches, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        prepared.embeddings[0], affine.cls + affine.position[0], rtol=0, atol=1e-12
    )


def test_vision_embedding_bounds_hold_the_embeddings_of_extreme_images():
    adapter = HFImageClassifierAdapter(
        tiny_vit(), image_mean=[0.5], image_std=[0.25], dtype="float64"
    )
    lower, upper = adapter.embedding_bounds()
    assert torch.equal(lower, embedding_bounds(adapter)[0])  # box.py asks the adapter
    assert torch.equal(upper, embedding_bounds(adapter)[1])
    torch.manual_seed(0)
    images = [torch.zeros(1, 8, 8), torch.ones(1, 8, 8), (torch.rand(1, 8, 8) > 0.5).double()]
    for img in images:
        x0 = adapter.prepare(img).embeddings
        assert bool((x0 >= lower - 1e-12).all() and (x0 <= upper + 1e-12).all())


def test_text_adapter_capabilities(tmp_path):
    tokenizer = make_tokenizer(tmp_path)
    model = tiny_bert()
    adapter = HFSequenceClassifierAdapter(model, tokenizer, dtype="float64")
    assert adapter.modality == "text" and adapter.task == "classifier"
    assert adapter.tokenizer is tokenizer and adapter.model is model
    assert adapter.patch_size is None
    assert as_text_model(adapter) is adapter
    assert as_image_model(adapter) is None and as_masked_lm(adapter) is None
    lower, upper = adapter.embedding_bounds()
    x0 = adapter.prepare(TEXT).embeddings
    assert bool((x0 >= lower).all() and (x0 <= upper).all())


def test_text_adapter_reads_an_input_from_the_command_line(tmp_path):
    adapter = HFSequenceClassifierAdapter(tiny_bert(), make_tokenizer(tmp_path))
    assert adapter.read_input(TEXT) == TEXT
    (tmp_path / "post.txt").write_text("  i love you\n", encoding="utf-8")
    assert adapter.read_input(str(tmp_path / "post.txt")) == "i love you"
    with pytest.raises(InputError, match="does not exist"):
        adapter.read_input(str(tmp_path / "missing.txt"))
    (tmp_path / "dir.txt").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        adapter.read_input(str(tmp_path / "dir.txt"))
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(InputError, match="not UTF-8"):
        adapter.read_input(str(tmp_path / "latin.txt"))


def test_masked_lm_capabilities(tokenizer):
    adapter = HFMaskedLMAdapter(tiny_mlm(), tokenizer, top_k=4)
    assert adapter.modality == "text" and adapter.task == "masked-lm"
    assert adapter.tokenizer is tokenizer
    assert as_masked_lm(adapter) is adapter and as_text_model(adapter) is adapter


class _ImageLike(ModelAdapter):
    """A model that is no Hugging Face adapter but says it reads images."""

    modality = "image"
    patch_size = 4

    def prepare(self, raw: object) -> PreparedInput:
        raise NotImplementedError

    def logits(self, x: torch.Tensor, prepared: PreparedInput) -> torch.Tensor:
        raise NotImplementedError


def test_typed_views_go_by_capability_not_class():
    adapter = _ImageLike()
    assert as_image_model(adapter) is adapter  # type: ignore[comparison-overlap]
    assert as_text_model(adapter) is None
    with pytest.raises(ModelError, match="_ImageLike"):
        adapter.embedding_bounds()
