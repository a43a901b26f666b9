"""Output files (tables, exports, figures, the HTML report) written whole or not at all."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(temporary_path)`` on a temporary file beside ``path``, then rename it to
    ``path``: a reader never sees a half-written file, and a failure leaves the old one.

    Raises:
        ValueError: naming ``path`` and why it cannot be written (one line, for the CLI).
    """
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix or ".tmp")
        os.close(handle)
    except OSError as error:
        raise ValueError(f"cannot write --output {str(path)!r}: {error.strerror}") from None
    try:
        write(temporary)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; an output file is not
        os.replace(temporary, path)
    except OSError as error:
        raise ValueError(f"cannot write --output {str(path)!r}: {error.strerror}") from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
