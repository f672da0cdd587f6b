"""The error policy: a ledger that cannot be used raises LedgerError, a generator that fails or
answers garbage raises GeneratorError; both are run failures (exit 1) with a one-line message."""

from __future__ import annotations

import pytest

from thrifty.errors import GeneratorError, LedgerError, RunError, TeacherError
from thrifty.synthesis import OpenAIGenerator
from thrifty.teachers.ledger import Ledger


def test_a_file_that_is_not_a_ledger_raises_ledger_error(tmp_path):
    bad = tmp_path / "notes.sqlite"
    bad.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(LedgerError, match="Cannot open ledger .*Is it a thrifty ledger file") as e:
        Ledger(bad)
    assert isinstance(e.value, RunError) and not isinstance(e.value, TeacherError) and e.value.exit_code == 1
    with Ledger(tmp_path / "ok.sqlite") as led, pytest.raises(LedgerError, match="SELECT statements only"):
        led.query("DELETE FROM labels")


@pytest.fixture
def garbage_server(json_server):
    """Answers every chat completion with HTTP 200 and a body that is not a completion."""
    return json_server(lambda n, body: (200, {"result": "ok"}))


def test_a_generator_answering_garbage_raises_generator_error(garbage_server):
    with pytest.raises(GeneratorError, match="sent an unexpected answer") as e:
        OpenAIGenerator("m", base_url=garbage_server).generate([{"role": "user", "content": "hi"}], {}, 5)
    assert isinstance(e.value, RunError) and not isinstance(e.value, TeacherError)
