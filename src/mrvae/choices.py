"""``Choice``: the enum base for every named option; parses from its value or its name (CLI, YAML)."""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A string enum whose members can also be looked up by name, case-insensitively
    (``GateFunction("sqrt")`` and ``GateFunction("SQRT")`` are the same member)."""

    @classmethod
    def _missing_(cls, value: object) -> Choice | None:
        if isinstance(value, str):
            for member in cls:
                if value.lower() in (member.name.lower(), member.value.lower()):
                    return member
        raise ValueError(f"{value!r} is not a valid {cls.__name__}; choose one of: "
                         f"{', '.join(m.value for m in cls)}")

    def __str__(self) -> str:
        return self.value
