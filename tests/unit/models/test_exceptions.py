"""The models' error classes: what each one is, and who raises it."""

from __future__ import annotations

import keras
import pytest

from corpus import TINY_META_ARGS
from harstream import ConfigError, HarstreamError
from models.exceptions import (
    ModelFileError,
    ModelsError,
    RegistryError,
    SpecError,
    UnknownModelError,
    UnknownVersionError,
)
from models.io import load_model, save_model
from models.registry import Registry
from models.spec import ModelMeta, ModelSpec
from models.train_config import TrainConfig


def test_hierarchy():
    for cls in (SpecError, ModelFileError, RegistryError, UnknownModelError, UnknownVersionError):
        assert issubclass(cls, ModelsError) and issubclass(cls, HarstreamError)
    assert issubclass(SpecError, ConfigError) and issubclass(SpecError, ValueError)
    for cls in (UnknownModelError, UnknownVersionError):
        assert issubclass(cls, RegistryError) and issubclass(cls, LookupError)


def test_invalid_options_raise_spec_error():
    with pytest.raises(SpecError, match="layers"):
        ModelSpec(layers=4)
    with pytest.raises(SpecError, match="epochs"):
        TrainConfig(epochs=0)


def test_registry_lookups_raise_unknown_model_or_version(tmp_path):
    registry = Registry(tmp_path)
    with pytest.raises(UnknownModelError, match="no model named 'har'"):
        registry.get("har")
    with pytest.raises(RegistryError, match="invalid model name"):
        registry.get("../har")


def test_a_model_keras_refuses_is_a_model_file_error(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2.0)])
    meta = ModelMeta(spec=ModelSpec(hidden=4), **TINY_META_ARGS)
    path = save_model(model, meta, tmp_path / "lambda.keras")
    with pytest.raises(ModelFileError, match="not loadable with safe_mode=True"):
        load_model(path)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "missing.keras")
