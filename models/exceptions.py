"""Errors raised by ``models``: all derive from :class:`ModelsError`, a
:class:`harstream.HarstreamError`.

- :class:`SpecError`: invalid values of a :class:`~models.spec.ModelSpec`,
  :class:`~models.spec.ModelMeta` or :class:`~models.train_config.TrainConfig`, or options that
  do not fit the model or data they are used with. Model options are configuration, so it is
  also a :class:`harstream.ConfigError` (and a ``ValueError``): ``except ConfigError`` catches
  every bad setting, a model's included.
- :class:`ModelFileError`: a model file is missing, unreadable, not a harstream model, has bad
  metadata, or Keras cannot load it with ``safe_mode=True``.
- :class:`RegistryError`: a registry call cannot be done (invalid name, rejected version, no
  rollback target, a damaged entry); :class:`UnknownModelError` and
  :class:`UnknownVersionError` (also ``LookupError``) when what was asked for is not there.

Other misuse (arrays of the wrong shape, a runtime that does not fit its weights) raises
:class:`ModelsError` itself.
"""

from harstream import ConfigError, HarstreamError


class ModelsError(HarstreamError):
    """Root of the errors raised by the ``models`` package."""


class SpecError(ModelsError, ConfigError):
    """A model's architecture, metadata or training options are invalid."""


class ModelFileError(ModelsError):
    """A model file is missing, unreadable, not a harstream model or not loadable."""


class RegistryError(ModelsError):
    """A registry operation cannot be done, or the registry on disk is damaged."""


class UnknownModelError(RegistryError, LookupError):
    """The registry holds no model of that name."""


class UnknownVersionError(RegistryError, LookupError):
    """The model has no such version or alias."""
