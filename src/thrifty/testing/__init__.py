"""Test doubles served for real: the simulated OpenAI-compatible teacher (:mod:`thrifty.testing.sim`) and a
scripted JSON server (:mod:`thrifty.testing.http`).

Used by the tests, the benchmark harness and ``thrifty serve-sim``; the library itself (core,
components, run, apps) never imports it (``tests/test_layout.py``)."""
