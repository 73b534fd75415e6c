"""Errors that cross module boundaries. Input problems are ``model.InvalidRequest``."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad or missing configuration value; the message names the environment variable."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")


class StoreUnavailable(RuntimeError):
    """The idempotency/state store cannot be reached: fail closed (webhook 503, message redelivered)."""

    retry_after_seconds = 5
