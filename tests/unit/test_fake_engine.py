"""The engine boundary itself: the fake honours the real interface, and image references split as the engine
splits them."""
import inspect

import pytest

from tests.helpers.fake_engine import FakeEngine
from torchdev.engine import Engine, ImageRef


def public_methods(cls) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(getattr(cls, name)) for name in vars(cls)
            if not name.startswith("_") and callable(getattr(cls, name))}


def test_the_fake_engine_has_every_method_of_the_real_one_with_the_same_signature():
    real, fake = public_methods(Engine), public_methods(FakeEngine)
    assert set(real) <= set(fake), f"the fake lacks {sorted(set(real) - set(fake))}"
    for name, signature in real.items():
        assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == \
            [(p.name, p.kind, p.default) for p in fake[name].parameters.values()], name


@pytest.mark.parametrize("text, repository, tag, digest, path", [
    ("torchdev", "torchdev", None, None, "torchdev"),
    ("torchdev:cu118", "torchdev", "cu118", None, "torchdev"),
    ("registry:5000/ml/torchdev", "registry:5000/ml/torchdev", None, None, "ml/torchdev"),
    ("registry:5000/ml/torchdev:2.0.1-cu118", "registry:5000/ml/torchdev", "2.0.1-cu118", None, "ml/torchdev"),
    ("nvidia/cuda:11.8.0@sha256:" + "b" * 64, "nvidia/cuda", "11.8.0", "sha256:" + "b" * 64, "nvidia/cuda"),
    ("localhost/base@sha256:" + "c" * 64, "localhost/base", None, "sha256:" + "c" * 64, "base"),
])
def test_references_split_where_the_engine_splits_them(text, repository, tag, digest, path):
    ref = ImageRef.parse(text)
    assert (ref.repository, ref.tag, ref.digest, ref.path) == (repository, tag, digest, path)
    assert str(ref) == text
