"""What several test modules share and is not a fixture: checks of a command's output and reads of a checkpoint.

Fixtures live in conftest.py; larger helpers in this package's modules (families, trained, chat_checkpoints,
gguf_files).
"""

from __future__ import annotations

import json
from pathlib import Path


def fails_cleanly(result, *fragments) -> None:
    """A one-line error a user can act on: non-zero exit, no traceback, every fragment in the output."""
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    for f in fragments:
        assert f in result.output, result.output


def read_hf_config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())
