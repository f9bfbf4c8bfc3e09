"""The side-by-side table of `make bench-peers`: figures read from the harness's rows, the section replaced in place."""

from pathlib import Path

from tests.bench import peers
from tests.bench.report import kept_sections


def _rows() -> list[dict]:
    influx, vm = peers.PEERS["influx"], peers.PEERS["vm"]
    return [
        {"section": "tsdb", "name": "workload", "devices": 2, "metrics": 3, "timestamps": 4, "total_points": 24},
        {"section": "tsdb", "name": f"ingest {influx}", "points_per_s": 400.0, "points_per_s_visible": 300.0},
        {"section": "tsdb", "name": f"ingest {vm}", "points_per_s": 800.0, "points_per_s_visible": 100.0},
        {"section": "target", "name": "target ingest", "points_per_s_acked": 200.0, "points_per_s_visible": 150.0},
        {"section": "tsdb", "name": f"{influx} q1 sequential", "p50_ms": 0.5, "p99_ms": 2.0},
        {"section": "tsdb", "name": f"{vm} q1 sequential", "p50_ms": 0.25, "p99_ms": 1.0},
        {"section": "target", "name": "target q1 c=1", "p50_ms": 1.0, "p99_ms": 3.0},
        {"section": "tsdb", "name": f"{vm} q3 c=50", "req_per_s": 100.0, "p99_ms": 9.0},
        {"section": "target", "name": "target q3 c=50", "req_per_s": 150.0, "p99_ms": 8.0},
    ]


def test_ratios_are_ours_against_the_best_peer() -> None:
    text = peers.table(_rows(), ["-D", "2"])
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    assert lines["| ingest, acked points/s"].endswith("| 0.25x |")  # 200 against VictoriaMetrics' 800
    assert lines["| ingest, visible points/s"].endswith("| 0.50x |")  # 150 against InfluxDB's 300
    assert lines["| q1 sequential p50 / p99 ms"].endswith("| p50 0.25x |")  # 0.25 ms best peer / our 1.0 ms
    assert lines["| q3 at 50 concurrent: req/s (p99 ms)"].endswith("| **1.50x** |")  # ahead: bold
    assert lines["| q2 at 50 concurrent: req/s (p99 ms)"].endswith("| - |")  # no figures: no ratio
    assert "2 devices x 3 metrics x 4 timestamps = 24 points" in text


def test_the_section_is_replaced_in_place_and_kept_by_the_main_report(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{peers.HEADING}\n\nold table\n\n## Method\n\nhow\n")
    peers.write_section(f"{peers.HEADING}\n\nnew table\n", doc)
    text = doc.read_text()
    assert "old table" not in text and "new table" in text
    assert text.index("new table") < text.index("## Method") and text.endswith("how\n")
    assert kept_sections(text).strip() == f"{peers.HEADING}\n\nnew table"
