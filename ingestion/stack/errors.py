"""Errors of the local stack, phrased for the person at the terminal."""

from __future__ import annotations


class StackError(RuntimeError):
    """Starting, stopping or inspecting the local stack failed; the message says what to do."""


class CitusUnavailable(StackError):
    """``--citus`` was asked for, but this machine cannot provide a local Citus cluster."""
