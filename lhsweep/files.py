"""Files lhsweep writes for others to read (state, metrics): replaced whole, never seen half-written."""

from __future__ import annotations

import os
import tempfile


def replace_file(path: str, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` atomically: a temporary file in its directory, then rename()."""
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path) or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)  # mkstemp makes it 0600; readers such as node_exporter run as other users
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
