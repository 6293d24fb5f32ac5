"""Errors services raise on bad requests; the API maps each to one HTTP status and a clear message."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(ServiceError):
    status_code = 404


class Conflict(ServiceError):
    status_code = 409


class Invalid(ServiceError):
    status_code = 422


class PayloadTooLarge(ServiceError):
    status_code = 413
