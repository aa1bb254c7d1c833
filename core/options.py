"""Options declared once: a dataclass field says its default, its type and how a command line exposes it.

``LabelOptions`` and ``TrainConfig`` are the Python API; their fields made with :func:`option` carry a ``cli``
declaration that ``jobs/`` turns into argparse flags and back (``jobs.common.add_option_arguments``), so a new
option is one field and the CLI, the API and their defaults cannot drift apart.  Fields made without it are
API-only knobs.  Nothing here knows argparse: a declaration is plain data.
"""

from __future__ import annotations

from dataclasses import MISSING, field, fields
from typing import Any


def option(default: Any, flag: str, help: str, **cli: Any) -> Any:
    """A dataclass field exposed as ``flag``; ``cli`` is handed to argparse (``type``, ``choices``, ``action``...).

    Two keys are ours: ``convert`` turns the parsed value into the field's value (a list into a tuple, ``none``
    into None), and ``negative`` names a second flag that sets a boolean back to its default.  ``default=MISSING``
    makes the option required."""
    declared = {"flag": flag, "help": help, **cli}
    if default is MISSING:
        return field(metadata={"cli": {**declared, "required": True}})
    if isinstance(default, list | dict | set):
        return field(default_factory=lambda: type(default)(default), metadata={"cli": declared})
    return field(default=default, metadata={"cli": declared})


def cli_fields(cls: type) -> list[tuple[str, Any, dict[str, Any]]]:
    """``(field name, default, CLI declaration)`` of each of ``cls``'s fields that has one, in declaration order."""
    out = []
    for f in fields(cls):
        if "cli" in f.metadata:
            default = f.default if f.default is not MISSING else None
            out.append((f.name, default, dict(f.metadata["cli"])))
    return out
