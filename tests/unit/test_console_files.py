"""The web console's file table: what the page loads is served, nothing is fetched from elsewhere, the notice is true."""

import hashlib
import re
from pathlib import Path

from gateway.routes.console import FILES

CONSOLE = Path(__file__).resolve().parents[2] / "gateway" / "console"


def test_every_file_the_page_loads_is_served_from_the_gateway() -> None:
    page = FILES["index.html"].content.decode()
    loaded = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert len(loaded) == 4, loaded  # two style sheets, two scripts
    for url in loaded:
        assert url.startswith("/console/"), f"{url}: the console loads nothing from another origin (no CDN)"
        assert url.removeprefix("/console/") in FILES, f"{url} is not in the console's file table"


def test_the_table_holds_the_console_folder_and_nothing_else() -> None:
    assert set(FILES) == {"index.html", "app.js", "style.css", "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"}
    for name, served in FILES.items():
        assert served.content == (CONSOLE / name).read_bytes()


def test_the_vendor_notice_names_the_version_and_checksums_of_the_copies() -> None:
    notice = (CONSOLE / "vendor" / "NOTICE.md").read_text()
    script = (CONSOLE / "vendor" / "uPlot.iife.min.js").read_bytes()
    banner = re.match(rb"/\*! https://github.com/leeoniya/uPlot \(v([\d.]+)\) \*/", script)
    assert banner, "the vendored uPlot lost its version banner"
    assert f"| {banner[1].decode()} | MIT" in notice
    for name in ("uPlot.iife.min.js", "uPlot.min.css"):
        digest = hashlib.sha256((CONSOLE / "vendor" / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in notice, f"NOTICE.md has a stale checksum for {name}"
    assert (CONSOLE / "vendor" / "uPlot.LICENSE").read_text().startswith("The MIT License")
