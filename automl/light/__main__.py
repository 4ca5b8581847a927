"""Classify ECG pages with this export: ``python -m <export folder> PAGE...`` (from the folder's
parent) or ``python <export folder> PAGE...``; ``--json`` for one JSON object per page."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from light_runtime import main  # noqa: E402  (the folder is on the path only now)

sys.exit(main(sys.argv[1:]))
