"""Save and load a model together with its metadata, as one ``.keras`` file.

The metadata travels inside the Keras archive (a zip) as ``harstream_meta.json``, so a model
file is self-describing wherever it is copied. Loading always uses ``safe_mode=True``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import keras

from models import layers  # noqa: F401  (registers harstream's layers for loading)
from models.exceptions import ModelFileError
from models.spec import ModelMeta

META_ENTRY = "harstream_meta.json"


def save_model(model: keras.Model, meta: ModelMeta, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` and ``meta`` to ``path`` (must end in ``.keras``)."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: a model file must end in .keras")
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
        raise ModelFileError(f"{path}: no such model file") from exc
    except OSError as exc:
        raise ModelFileError(f"{path}: unreadable model file ({exc})") from exc
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path}: not a harstream model file ({exc})") from exc


def load_model(path: str | os.PathLike[str]) -> tuple[keras.Model, ModelMeta]:
    """The model at ``path`` (loaded with ``safe_mode=True``) and its metadata.

    Raises :class:`ModelFileError` for a file that is missing, not a harstream model, or that
    Keras will not load (e.g. a ``Lambda`` layer, refused by ``safe_mode``).
    """
    meta = read_meta(path)
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError, TypeError, ... for unloadable files
        raise ModelFileError(f"{path}: not loadable with safe_mode=True ({exc})") from exc
    return model, meta
