"""`smartecg digitize`: each page's leads written as signal files, with the reading drawn over the page."""
from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["digitize_files"]


def digitize_files(images: list[str], out: str, *, file_format: str = "wfdb", fs: int = 500) -> int:
    """Digitise every page; one line per page. A page that cannot be read gets one line on stderr
    and the others go on; the exit code is 1 when any page failed."""
    from tqdm.auto import tqdm

    from features.digitize import digitize, draw_reading, write_csv, write_wfdb
    from features.imageio import ImageReadError

    out_dir = Path(out)
    failed = 0
    for image in tqdm(images, desc="digitize", unit="page", disable=len(images) < 5 or None, leave=False):
        name = _record_name(image)
        try:
            recording = digitize(image, fs=fs)
            if file_format == "wfdb":
                written = write_wfdb(recording, out_dir, name)
            else:
                written = [write_csv(recording, out_dir / f"{name}.csv")]
            written.append(draw_reading(recording, image, out_dir / f"{name}.png"))
        except (ImageReadError, OSError) as exc:
            failed += 1
            print(f"smartecg: error: {exc}", file=sys.stderr)
            continue
        page = recording.page
        print(f"{image}: {page.layout}{' + rhythm strip' if page.geometry.rhythm else ''}, "
              f"{len(recording.channels)} channels at {fs} Hz, {recording.calibration} -> "
              + ", ".join(str(p) for p in written))
    return 1 if failed else 0


def _record_name(image: str) -> str:
    """A WFDB record name from the file's stem: letters, digits and underscores."""
    return re.sub(r"[^A-Za-z0-9_]", "_", Path(image).stem) or "page"
