"""``DataError``: the one exception a user's data files can cause, with a one-line message naming the file."""

from __future__ import annotations


class DataError(ValueError):
    """A data file is missing, truncated, malformed or fails its checksum.

    The message is one line: the file (or URL) first, then the problem and, where there is one, the fix.
    """
