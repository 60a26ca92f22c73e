"""A versioned model registry on a plain directory tree, safe for several writing processes.

Layout (one directory per model name, one per version; nothing else is needed to read it)::

    <root>/<name>/aliases.json             {"champion": 3, "previous": 2}, replaced atomically
    <root>/<name>/v0003/model.keras        the model file, metadata inside (see models.io)
    <root>/<name>/v0003/meta.json          the same ModelMeta, as JSON, for reading without Keras
    <root>/<name>/v0003/metrics.json       evaluation figures given at registration
    <root>/<name>/v0003/lineage.json       parent, training data, notes, created_at, code version
    <root>/<name>/v0003/rejected.json      only for a rejected candidate: reason and time
    <root>/<name>/.lock                    flock'ed while aliases or rejections change

A version directory is complete before it appears: it is built in ``<name>/.staging-<uuid>``
and renamed to the next free ``vNNNN`` (the next number is tried when another process took
it). Version directories never change afterwards, except that ``reject`` adds
``rejected.json``. Alias updates are serialised with a lock file and land by ``os.replace``, so
a watcher that polls :meth:`Registry.champion_stamp` (an ``os.stat`` plus one small read)
sees every change of champion.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import harstream
from models.exceptions import (
    ModelFileError,
    RegistryError,
    UnknownModelError,
    UnknownVersionError,
)
from models.spec import ModelMeta

if TYPE_CHECKING:
    import keras

Status = Literal["candidate", "champion", "previous", "rejected"]
Ref = int | str
"""A version number, ``"vNNNN"`` (or ``"3"``), ``"latest"``, or an alias such as ``"champion"``."""

MODEL_FILE = "model.keras"
ALIASES_FILE = "aliases.json"
REJECTED_FILE = "rejected.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_VERSION_DIR = re.compile(r"v(\d{4,})")
_VERSION_REF = re.compile(r"v?(\d+)")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version, as read from disk; ``status`` is derived, never stored."""

    name: str
    version: int
    path: Path
    meta: ModelMeta
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    aliases: tuple[str, ...] = ()
    rejected: dict[str, Any] | None = None
    """``{"reason": ..., "rejected_at": ...}`` for a rejected candidate"""

    @property
    def label(self) -> str:
        return version_label(self.version)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def status(self) -> Status:
        """``rejected``, ``champion``, ``previous`` (the rollback target) or ``candidate``."""
        if self.rejected is not None:
            return "rejected"
        for alias in ("champion", "previous"):
            if alias in self.aliases:
                return alias
        return "candidate"

    def to_dict(self) -> dict[str, Any]:
        """Everything about the version as JSON-ready values."""
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "aliases": list(self.aliases),
            "path": str(self.path),
            "model_path": str(self.model_path),
            "meta": asdict(self.meta),
            "metrics": self.metrics,
            "lineage": self.lineage,
            "rejected": self.rejected,
        }


def version_label(version: int) -> str:
    """The directory name of a version.

    >>> version_label(3)
    'v0003'
    """
    return f"v{version:04d}"


@dataclass(frozen=True)
class Registry:
    """Versions of named models under ``root``, with ``champion``/``previous`` aliases."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    # -- reading -----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The model names that have at least one version."""
        if not self.root.is_dir():
            return []
        return sorted(
            d.name
            for d in self.root.iterdir()
            if _NAME.fullmatch(d.name) and d.is_dir() and self._numbers(d.name)
        )

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        numbers = self._existing(name)
        aliases = self.aliases(name)
        return [self._read(name, n, aliases) for n in numbers]

    def aliases(self, name: str) -> dict[str, int]:
        """Alias name -> version, e.g. ``{"champion": 3, "previous": 2}``."""
        path = self._dir(name) / ALIASES_FILE
        try:
            return {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
        except FileNotFoundError:
            return {}
        except (ValueError, AttributeError) as exc:
            raise RegistryError(f"{path}: unreadable aliases ({exc})") from exc

    def get(self, name: str, ref: Ref = "latest") -> ModelVersion:
        """The version ``ref`` of ``name`` (see :data:`Ref`)."""
        numbers = self._existing(name)
        aliases = self.aliases(name)
        return self._read(name, self._resolve(name, ref, numbers, aliases), aliases)

    def load(self, name: str, ref: Ref = "champion") -> tuple[keras.Model, ModelMeta]:
        """The Keras model of a version (loaded with ``safe_mode=True``) and its metadata."""
        from models.io import load_model  # imports Keras: only paid by those who load

        return load_model(self.get(name, ref).model_path)

    def champion_stamp(self, name: str) -> tuple[int | None, int]:
        """``(champion version or None, mtime_ns of aliases.json or 0)``: cheap to poll.

        The file is stat'ed before it is read, so a change racing with the call shows up again
        (with a new mtime) on the next poll.
        """
        path = self._dir(name) / ALIASES_FILE
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None, 0
        return self.aliases(name).get("champion"), mtime

    # -- writing -----------------------------------------------------------------------------

    def register(
        self,
        name: str,
        model_path: str | os.PathLike[str],
        metrics: Mapping[str, Any] | None = None,
        *,
        parent: int | None = None,
        training_data: str = "",
        notes: str = "",
    ) -> ModelVersion:
        """Add a harstream ``.keras`` model as the next version of ``name`` (a candidate)."""
        from models.io import read_meta  # imports Keras: only paid by those who register

        check_name(name)
        meta = read_meta(model_path)  # rejects a file that is not a harstream model
        if parent is not None:
            parent = self.get(name, parent).version
        lineage: dict[str, Any] = {
            "parent": parent,
            "training_data": training_data,
            "notes": notes,
            "created_at": _now(),
            "source": str(Path(model_path).resolve()),
            "code": _code_version(),
        }
        files = {
            "meta.json": meta.to_json(),
            "metrics.json": _dumps(dict(metrics or {})),
            "lineage.json": _dumps(lineage),
        }
        home = self._dir(name)
        home.mkdir(parents=True, exist_ok=True)
        staging = home / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            shutil.copyfile(model_path, staging / MODEL_FILE)
            _fsync(staging / MODEL_FILE)
            for filename, text in files.items():
                _write(staging / filename, text)
            _fsync(staging)
            version = self._publish(name, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.get(name, version)

    def promote(self, name: str, version: Ref) -> ModelVersion:
        """Make ``version`` the champion; the old champion becomes ``previous``."""
        with self._locked(name):
            target = self.get(name, version)
            if target.rejected is not None:
                raise RegistryError(
                    f"{name} {target.label} was rejected ({target.rejected.get('reason', '')}); "
                    "a rejected version is never promoted"
                )
            aliases = self.aliases(name)
            old = aliases.get("champion")
            if old != target.version:
                aliases["champion"] = target.version
                if old is not None:
                    aliases["previous"] = old
                self._write_aliases(name, aliases)
        return self.get(name, target.version)

    def rollback(self, name: str) -> ModelVersion:
        """Swap champion and previous; a second rollback rolls forward again."""
        with self._locked(name):
            aliases = self.aliases(name)
            if "previous" not in aliases:
                raise RegistryError(f"{name} has no previous champion to roll back to")
            target = self.get(name, aliases["previous"])
            if target.rejected is not None:
                raise RegistryError(
                    f"{name} {target.label} (previous) was rejected since; cannot roll back to it"
                )
            old = aliases.get("champion")
            aliases["champion"] = target.version
            if old is None:
                del aliases["previous"]
            else:
                aliases["previous"] = old
            self._write_aliases(name, aliases)
        return self.get(name, target.version)

    def reject(self, name: str, version: Ref, reason: str) -> ModelVersion:
        """Mark a candidate as rejected (e.g. it lost the gate against the champion)."""
        if not reason.strip():
            raise RegistryError("a rejection needs a reason")
        with self._locked(name):
            target = self.get(name, version)
            if target.status == "champion":
                raise RegistryError(f"{name} {target.label} is the champion; roll back first")
            path = target.path / REJECTED_FILE
            _replace(path, _dumps({"reason": reason, "rejected_at": _now()}))
        return self.get(name, target.version)

    # -- internals ---------------------------------------------------------------------------

    def _dir(self, name: str) -> Path:
        check_name(name)
        return self.root / name

    def _numbers(self, name: str) -> list[int]:
        """Version numbers on disk (possibly none)."""
        try:
            entries = os.listdir(self._dir(name))
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for e in entries if (m := _VERSION_DIR.fullmatch(e)))

    def _existing(self, name: str) -> list[int]:
        numbers = self._numbers(name)
        if not numbers:
            known = ", ".join(self.names()) or "none"
            raise UnknownModelError(
                f"no model named {name!r} in the registry at {self.root} (models: {known})"
            )
        return numbers

    def _resolve(self, name: str, ref: Ref, numbers: list[int], aliases: dict[str, int]) -> int:
        if isinstance(ref, bool) or not isinstance(ref, int | str):
            raise RegistryError(f"a version reference must be an int or a string, not {ref!r}")
        if ref == "latest":
            return numbers[-1]
        match = _VERSION_REF.fullmatch(ref) if isinstance(ref, str) else None
        if isinstance(ref, int) or match:
            version = ref if isinstance(ref, int) else int(match.group(1))
            if version not in numbers:
                raise UnknownVersionError(
                    f"{name} has no version {version}; it has {version_label(numbers[0])}"
                    f"..{version_label(numbers[-1])}"
                )
            return version
        if ref not in aliases:
            known = ", ".join(sorted(aliases)) or "none yet; promote a version first"
            raise UnknownVersionError(f"{name} has no alias {ref!r} (aliases: {known})")
        return aliases[ref]

    def _read(self, name: str, version: int, aliases: dict[str, int]) -> ModelVersion:
        path = self._dir(name) / version_label(version)
        try:
            meta = ModelMeta.from_json((path / "meta.json").read_text())
            metrics = json.loads((path / "metrics.json").read_text())
            lineage = json.loads((path / "lineage.json").read_text())
            rejected_file = path / REJECTED_FILE
            rejected = json.loads(rejected_file.read_text()) if rejected_file.exists() else None
        except (OSError, ValueError, ModelFileError) as exc:
            raise RegistryError(f"{path}: damaged registry entry ({exc})") from exc
        return ModelVersion(
            name=name,
            version=version,
            path=path,
            meta=meta,
            metrics=metrics,
            lineage=lineage,
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
            rejected=rejected,
        )

    def _publish(self, name: str, staging: Path) -> int:
        """Rename ``staging`` to the next free version directory; returns its number."""
        version = max(self._numbers(name), default=0) + 1
        while True:
            target = staging.parent / version_label(version)
            try:
                os.rename(staging, target)  # fails (ENOTEMPTY) onto a published version
            except OSError:
                if not target.exists():
                    raise
                version += 1  # another process took this number meanwhile
            else:
                _fsync(staging.parent)
                return version

    def _write_aliases(self, name: str, aliases: dict[str, int]) -> None:
        _replace(self._dir(name) / ALIASES_FILE, _dumps(dict(sorted(aliases.items()))))

    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        """Serialise read-modify-write of a name's aliases and rejections across processes."""
        self._existing(name)
        with open(self._dir(name) / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def check_name(name: str) -> None:
    """Refuse a model name that could not be a registry directory (:class:`RegistryError`)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RegistryError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dumps(obj: Any) -> str:
    """JSON text; NumPy scalars and arrays become plain numbers and lists."""

    def plain(value: Any) -> Any:
        if hasattr(value, "tolist"):
            return value.tolist()
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")

    try:
        return json.dumps(obj, indent=2, sort_keys=True, default=plain) + "\n"
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"cannot store as JSON: {exc}") from exc


@cache
def _code_version() -> dict[str, str]:
    """harstream's version, plus the git commit when running from a git checkout."""
    code = {"harstream": harstream.__version__}
    source = Path(harstream.__file__).resolve().parent.parent
    if (source / ".git").exists():
        with suppress(OSError, subprocess.SubprocessError):
            commit = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=source,
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
            if commit:
                code["git_commit"] = commit
    return code


def _fsync(path: Path) -> None:
    """Flush a file or a directory (its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _replace(path: Path, text: str) -> None:
    """Replace ``path`` atomically: temp file in the same directory, fsync, rename, fsync dir."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it private; registry files are for all to read
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync(path.parent)
