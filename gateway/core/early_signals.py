"""SIGHUPs that reach an intake worker before its event loop handles them.

Kept apart, without imports, so that `gateway.__main__` can install the handler
before the rest of the package loads (see there).
"""

hup_pending = False


def note_hup(signum: int, frame: object) -> None:
    global hup_pending
    hup_pending = True
