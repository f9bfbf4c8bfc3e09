"""Issue 11, the contract: schemathesis fuzzes the real gateway from its own OpenAPI document.

Every operation gets its documented examples, the coverage phase (boundary and invalid values of every
parameter and field, wrong methods) and a fuzzing phase, seeded and bounded in examples, so a run is
reproducible and takes ~30 s here (plus ~15 s to start its own servers). It must find no 5xx and no answer the document does not describe
(status, content type, headers, body schema, Allow on 405 and OPTIONS).

Reproduce a failure by hand with the command printed in the assertion message (it names the seed).
"""

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import start_servers
from tests.support.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SEED = 11
MAX_EXAMPLES = 5  # per operation and phase; the coverage phase adds its own boundary cases (~2,400 requests)
MAX_SECONDS = 240  # a hard stop for a run on a loaded machine; ~30 s alone
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
    "negative_data_rejection",  # a request the document calls invalid is refused
    "allow_header_conformance",
)


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """Servers and processes of its own: the fuzzer defines metrics (e.g. "temperature") and rules that watch
    every device, which would change what the shared stack accepts and alerts on for the tests after it."""
    servers = start_servers(tmp_path / "servers")
    stack = Stack(servers, tmp_path / "logs")
    try:
        stack.start_all()
        yield stack
    finally:
        stack.stop_all()
        servers.stop()


def test_the_gateway_keeps_its_openapi_contract(own_stack: Stack, tmp_path: Path) -> None:
    stack = own_stack
    st = Path(sys.executable).with_name("st")
    command = [
        str(st), "run", f"{stack.url}/schema/openapi.json",
        "--header", f"X-Api-Key: {stack.api_key}",
        "--checks", ",".join(CHECKS),
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--request-timeout", "15",
        "--generation-database", "none",
        "--no-color",
        "--report-dir", str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=MAX_SECONDS, cwd=tmp_path, check=False)
    output = run.stdout + run.stderr
    shown = " ".join(c if c != f"X-Api-Key: {stack.api_key}" else "'X-Api-Key: <key>'" for c in command)
    assert run.returncode == 0, f"schemathesis found contract violations ({shown}):\n{output[-20_000:]}"
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected and tested, output[-3000:]
    # Every documented operation was exercised (none skipped for an unusable schema).
    assert int(tested[1]) == int(selected[1]) == int(selected[2]) >= 26, output[-3000:]
