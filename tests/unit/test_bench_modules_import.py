"""Every benchmark module imports: `make bench` is not part of `make test`, so drift in what a benchmark borrows from
the product (a renamed helper, a changed signature) would otherwise show only when someone runs it.

tests.bench.big_regression built its statement with gateway/views/aggregates.py's ``_filter(time, True)`` after
that argument became a ``Filter``: `make bench-big` failed at import for as long as nobody ran it.
"""

import importlib
import pkgutil

import pytest

import tests.bench

MODULES = sorted(m.name for m in pkgutil.iter_modules(tests.bench.__path__, "tests.bench."))


def test_there_are_benchmarks_to_import() -> None:
    assert {"tests.bench.run", "tests.bench.peers", "tests.bench.big_queries"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_a_benchmark_module_imports(name: str) -> None:
    importlib.import_module(name)
