"""Save and load a model together with its metadata, as one ``.keras`` file.

The metadata travels inside the Keras archive (a zip) as ``harstream_meta.json``, so a model
file is self-describing wherever it is copied. Loading always uses ``safe_mode=True``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras

from models.exceptions import ModelsError
from models.spec import ModelMeta

META_ENTRY = "harstream_meta.json"


def save_model(model: keras.Model, meta: ModelMeta, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` and ``meta`` to ``path`` (must end in ``.keras``)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelsError(f"{path}: a model file must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(META_ENTRY, meta.to_json())
    return path


def read_meta(path: str | os.PathLike[str]) -> ModelMeta:
    """The metadata of the model at ``path``, without loading the model."""
    try:
        with zipfile.ZipFile(path) as archive:
            return ModelMeta.from_json(archive.read(META_ENTRY).decode("utf-8"))
    except FileNotFoundError as exc:
        raise ModelsError(f"{path}: no such model file") from exc
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelsError(f"{path}: not a harstream model file ({exc})") from exc


def load_model(path: str | os.PathLike[str]) -> tuple[keras.Model, ModelMeta]:
    """The model at ``path`` (loaded with ``safe_mode=True``) and its metadata."""
    meta = read_meta(path)
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    return model, meta
