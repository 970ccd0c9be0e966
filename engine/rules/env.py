"""``${NAME}`` in rule files: read from the environment when the rules load.

``${NAME:-default}`` gives a default when the variable is unset or empty; ``$$`` is a
literal ``$``. Vars, hosts, lookup URLs and headers use it, so tokens and hosts stay
out of rule files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> tuple[str, list[tuple[str, int]]]:
    """Replace ``${NAME}`` / ``${NAME:-default}``; ``$$`` is a literal ``$``.

    Returns the text and the (name, offset) of each variable that is unset with no default.
    """
    missing: list[tuple[str, int]] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                missing.append((name, match.start()))
                return ""
            return default
        return value

    return _ENV.sub(replace, text), missing
