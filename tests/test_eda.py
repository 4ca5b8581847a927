import json
import shutil

from PIL import Image

from automl.eda import write_report
from features.dataset import CLASSES, scan


def test_report_writes_charts_summary_and_markdown_with_problems_listed(tiny_synthetic, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_synthetic, data)
    first = sorted((data / "MI").glob("*.jpg"))[0]
    (data / "MI" / "broken.jpg").write_bytes(first.read_bytes()[:5000])
    shutil.copy(first, data / "MI" / "copy.jpg")

    manifest = scan(data)
    summary = write_report(manifest, tmp_path / "report")

    out = tmp_path / "report"
    for name in ("class_counts.png", "class_share.png", "samples.png", "page_sizes.png", "panels.png"):
        with Image.open(out / name) as im:
            assert im.width > 300 and im.height > 300, name
    saved = json.loads((out / "summary.json").read_text())
    assert saved["class_counts"] == {c: 3 for c in CLASSES} == summary["class_counts"]
    assert saved["n_images"] == 15
    assert [s["path"] for s in saved["skipped"]] == [str(data / "MI" / "broken.jpg")]
    assert "truncated" in saved["skipped"][0]["reason"]
    assert len(saved["duplicates_dropped"]) == 1
    assert "message" in saved["shortcut_audit"]
    # Every default synthetic page is 3x4 with a rhythm strip: nothing for the layout to give away.
    assert saved["layout_audit"]["table"] == {"3x4_rhythm": {c: 3 for c in CLASSES}}
    assert saved["layout_audit"]["message"].startswith("OK") and "message" in saved["header_audit"]
    assert saved["panels_found_by"] == {"projection": 15} and saved["fixed_fraction_pages"] == []
    markdown = (out / "report.md").read_text()
    assert "## Shortcut audit" in markdown and "### Layout" in markdown and "![lead panels](panels.png)" in markdown
    assert "broken.jpg" in markdown
    assert first.name in markdown and "copy.jpg" in markdown  # the duplicate pair
