"""Messages out of a file: one .eml message, or every message of an mbox.

Used by `bounce ingest`. mbox files (first line "From ") are read with the
stdlib `mailbox` module, which undoes the ">From " quoting; anything else is
one RFC 5322 message.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

__all__ = ["messages"]


def messages(path: Path) -> Iterator[bytes]:
    """The raw bytes of each message in `path` (OSError if unreadable)."""
    with path.open("rb") as f:
        is_mbox = f.read(5) == b"From "
    if not is_mbox:
        yield path.read_bytes()
        return
    box = mailbox.mbox(path, create=False)
    try:
        for key in box.iterkeys():
            yield box.get_bytes(key)
    finally:
        box.close()
