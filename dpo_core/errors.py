"""One exception family: every message says what was wrong and how to fix it."""

from __future__ import annotations


class DPOLabError(Exception):
    """Base error. `str(err)` is a full sentence for a user; `fix` is the suggested remedy."""

    exit_code = 2
    field: str | None = None  # the setting at fault, where one is (ConfigError)

    def __init__(self, message: str, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(f"{message} Fix: {fix}" if fix else message)


class ConfigError(DPOLabError):
    """A configuration value is invalid (names the field, the value and the fix).

    `field` is the (dotted) name of the setting at fault, so a form can show the message next to
    that widget without reading the text."""

    def __init__(self, message: str, fix: str | None = None, field: str | None = None):
        super().__init__(message, fix)
        self.field = field


class DataError(DPOLabError):
    """Input data is malformed (names the file, the row/field and the accepted shapes)."""


class ModelError(DPOLabError):
    """A model spec cannot be resolved, prepared or loaded."""


class StoreError(DPOLabError):
    """The workspace store is unusable (locked, corrupt, newer than this code)."""


class NotFoundError(DPOLabError):
    """A named object (dataset, pair, run) does not exist."""


class ConflictError(DPOLabError):
    """An edit was made on a stale version; nothing was overwritten."""

    def __init__(self, message: str, fix: str | None = None, current: dict | None = None):
        super().__init__(message, fix)
        self.current = current


class JobError(DPOLabError):
    """A background job cannot be started, stopped or resumed."""
