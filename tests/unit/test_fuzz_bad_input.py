"""No traceback and no hang for any bad input (issue 20), property-based.

For each file kind — config.yaml, each policy file, each key and secret file — and
for the command line, hypothesis makes FUZZ_EXAMPLES inputs (400 by default; the
environment variable sets it) and runs what check-config runs on them in this
process (tests/fixtures/bad_input.py says how, and what counts as a traceback or a
hang). bench/fuzz_bad_input.py is the long run (100,000 per kind).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.bad_input import (
    FILE_KINDS,
    KEY_KINDS,
    POLICY_FILES,
    Workspace,
    argv_lists,
    contained,
    file_contents,
    key_contents,
    run_cli,
    validate,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("fuzz"))


def _fuzz_files(workspace: Workspace, kinds: tuple[str, ...],
                contents: dict[str, st.SearchStrategy[tuple[bytes, int]]]) -> dict[str, int]:
    """EXAMPLES checks; in each, every kind's file is fuzzed, drawn on its own (the
    checks report every file's problems, so one file's refusal hides no other's).
    Returns how many times each kind's file differed from the shipped one."""
    fuzzed = {kind: 0 for kind in kinds}
    refusals = {"refused": 0}

    @FUZZ
    @given(files=st.fixed_dictionaries({k: contents[k] for k in kinds}))
    def check(files: dict[str, tuple[bytes, int]]) -> None:
        config = None
        try:
            for kind, (data, mode) in files.items():
                config = workspace.write(kind, data, mode)
                fuzzed[kind] += data != workspace.good[kind]
            assert config is not None
            refusals["refused"] += validate(config) is not None
        finally:
            for kind in files:
                workspace.restore(kind)

    check()
    assert refusals["refused"] > 0  # the generators do make bad files
    return fuzzed


def test_config_yaml_never_raises_anything_but_config_errors(workspace: Workspace) -> None:
    contents = {"config.yaml": file_contents(workspace.shipped["config.yaml"]).map(
        lambda b: (b, 0o644))}
    fuzzed = _fuzz_files(workspace, ("config.yaml",), contents)
    assert fuzzed["config.yaml"] >= EXAMPLES * 0.95


def test_policy_files_never_raise_anything_but_config_errors(workspace: Workspace) -> None:
    contents = {name: file_contents(workspace.shipped[name]).map(lambda b: (b, 0o644))
                for name in POLICY_FILES}
    fuzzed = _fuzz_files(workspace, POLICY_FILES, contents)
    assert min(fuzzed.values()) >= EXAMPLES * 0.9, fuzzed


def test_key_and_secret_files_never_raise_anything_but_config_errors(
        workspace: Workspace) -> None:
    contents = {kind: key_contents() for kind in KEY_KINDS}
    fuzzed = _fuzz_files(workspace, tuple(KEY_KINDS), contents)
    assert min(fuzzed.values()) >= EXAMPLES * 0.9, fuzzed


def test_every_verb_answers_random_arguments_without_a_traceback(
        workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No config.yaml in the working directory: a verb without -c finds none.
    monkeypatch.chdir(tmp_path)
    good = str(workspace.configs["consent.yaml"])  # small, SQLite: no network for verbs
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(b"listeners: {a: 1}\n\xff")
    binary = tmp_path / "binary"
    binary.write_bytes(os.urandom(200))
    empty = tmp_path / "empty.yaml"  # a config of defaults only: it loads
    empty.write_text("")
    paths = [good, str(broken), str(binary), str(tmp_path), "/nonexistent/x", str(empty),
             str(tmp_path / "new-file")]
    statuses: set[int] = set()

    @FUZZ
    @given(argv=argv_lists(paths))
    def check(argv: list[str]) -> None:
        argv = contained(argv, str(broken))
        try:
            statuses.add(run_cli(argv))
        finally:
            (tmp_path / "new-file").unlink(missing_ok=True)

    check()
    assert statuses <= {0, 1, 2, 130}, statuses
    assert {1, 2} <= statuses


def test_every_file_kind_is_fuzzed() -> None:
    assert set(FILE_KINDS) == {"config.yaml", *POLICY_FILES, *KEY_KINDS}
