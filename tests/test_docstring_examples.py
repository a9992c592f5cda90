"""The ``Examples`` sections of the library's docstrings, run as doctests.

Every module of ``nni_lightnas`` is imported under its installed name (``strategies/`` and
``search_spaces/`` install as ``nni_lightnas.strategies`` and ``nni_lightnas.search_spaces``),
and each docstring with examples becomes one test, named after the object it documents:
``pytest tests/test_docstring_examples.py -k latency_multiplier`` runs one module's examples.

Each docstring runs in a fresh temporary working directory with every random generator seeded
at 0, so an example may write files next to it and print seeded draws. Examples that need a
data set, a device or minutes of compute carry ``# doctest: +SKIP``; a docstring whose
examples are all skipped is reported as skipped.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import random

import numpy as np
import pytest
import torch

#: Modules not collected, with the reason. Exclude a module only while its examples are fixed.
EXCLUDED_MODULES: dict[str, str] = {
    'nni_lightnas.__main__': 'runs the command line on import (and has no examples)',
}

OPTION_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


#: The library's packages; the last two live in their own folders of the repository.
PACKAGES = ('nni_lightnas', 'nni_lightnas.search_spaces', 'nni_lightnas.strategies')


def _module_names() -> list[str]:
    names = set(PACKAGES)
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names.update(info.name for info in pkgutil.walk_packages(package.__path__, package_name + '.'))
    return sorted(name for name in names if name not in EXCLUDED_MODULES)


def _docstring_tests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = []
    for name in _module_names():
        module = importlib.import_module(name)
        # The finder keeps to objects defined in the module: a re-export is collected once.
        tests.extend(test for test in finder.find(module, name) if test.examples)
    return sorted(tests, key=lambda test: test.name)


DOCTESTS = _docstring_tests()


def _seed_everything(seed: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.mark.parametrize('test', DOCTESTS, ids=[test.name for test in DOCTESTS])
def test_docstring_example(test: doctest.DocTest, tmp_path, monkeypatch) -> None:
    if all(example.options.get(doctest.SKIP) for example in test.examples):
        pytest.skip('every example is marked +SKIP (needs a data set, a device or minutes)')
    monkeypatch.chdir(tmp_path)
    _seed_everything()
    runner = doctest.DocTestRunner(optionflags=OPTION_FLAGS)
    lines: list[str] = []
    num_threads = torch.get_num_threads()
    try:
        # The finder gave each docstring its own copy of the module's globals.
        result = runner.run(test, out=lines.append, clear_globs=True)
    finally:
        torch.set_num_threads(num_threads)
    if result.failed:
        pytest.fail(''.join(lines), pytrace=False)


def test_examples_are_collected() -> None:
    """The collection finds the library's examples (a broken walk would pass vacuously)."""
    names = {test.name for test in DOCTESTS}
    assert 'nni_lightnas.strategies.latency_multiplier.LatencyMultiplier' in names
    assert 'nni_lightnas.search_spaces.ops.parse_op_name' in names
    assert len(DOCTESTS) > 100, len(DOCTESTS)
