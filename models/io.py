"""Save and load a model together with its metadata, as one ``.keras`` file.

The metadata travels inside the Keras archive (a zip) as ``harstream_meta.json``, so a model
file is self-describing wherever it is copied; a stream model's refiner (:mod:`models.refine`),
if it has one, travels inside it too, as a ``.keras`` file of its own. Loading always uses
``safe_mode=True``.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import keras

from models import layers  # noqa: F401  (registers harstream's layers for loading)
from models.exceptions import ModelFileError
from models.spec import ModelMeta

META_ENTRY = "harstream_meta.json"
REFINER_ENTRY = "harstream_refiner.keras"


def save_model(
    model: keras.Model, meta: ModelMeta, path: str | os.PathLike[str],
    refiner: tuple[keras.Model, ModelMeta] | None = None,
) -> Path:  # fmt: skip
    """Write ``model`` and ``meta`` to ``path`` (must end in ``.keras``), with the ``refiner``
    (its model and metadata) of a stream model inside."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelFileError(f"{path}: a model file must end in .keras")
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(META_ENTRY, meta.to_json())
        if refiner is not None:
            with tempfile.TemporaryDirectory() as folder:
                archive.write(save_model(*refiner, Path(folder) / "refiner.keras"), REFINER_ENTRY)
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


def load_refiner(path: str | os.PathLike[str]) -> tuple[keras.Model, ModelMeta] | None:
    """The refiner saved inside the model file at ``path`` (loaded with ``safe_mode=True``)
    and its metadata, or None where it has none."""
    read_meta(path)  # a harstream model file, or ModelFileError
    with zipfile.ZipFile(path) as archive:
        if REFINER_ENTRY not in archive.namelist():
            return None
        data = archive.read(REFINER_ENTRY)
    with tempfile.TemporaryDirectory() as folder:
        inner = Path(folder) / "refiner.keras"
        inner.write_bytes(data)
        return load_model(inner)
