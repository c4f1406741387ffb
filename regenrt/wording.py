"""Words shared by messages: an option named for both interfaces, and text shortened at a word, never mid-word.

Example::

    f"pass {option('soft_mask')} to blend by its values"   # "--soft-mask (Python: RunOptions(soft_mask=True))"
    shorten("a very long engine message ...", 60)           # "a very long engine …"
"""
from __future__ import annotations


def option(name: str, value: object = True, cli_value: str | None = None, owner: str = "RunOptions") -> str:
    """A run option as the command line spells it and as Python does (errors reach both)."""
    flag = "--" + name.replace("_", "-")
    if value is not True:
        flag += f" {cli_value if cli_value is not None else value}"
    return f"{flag} (Python: {owner}({name}={value!r}))"


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut at the last whole word within ``limit`` characters, with an ellipsis."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    if " " in cut[limit // 2:]:
        cut = cut[:cut.rindex(" ")]
    return cut.rstrip(" ,;:(") + " …"
