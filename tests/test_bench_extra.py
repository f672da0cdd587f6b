"""``thrifty bench`` is the optional ``bench`` extra: without it, one line saying how to install it,
before any benchmark run (today's failure was a "bug in thrifty" report after the whole grid had run)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("missing", ["matplotlib", "pandas"])
def test_bench_without_the_extra_says_how_to_install_it(missing, tmp_path):
    out = tmp_path / "results"
    code = (f"import sys; sys.modules[{missing!r}] = None; from thrifty.cli import main; "
            f"sys.argv = ['thrifty', 'bench', '--smoke', '--out', {str(out)!r}, '--md', {str(tmp_path / 'B.md')!r}, "
            f"'--cache', {str(tmp_path / 'cache')!r}]; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    text = r.stdout + r.stderr
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in text, text
    assert f"({missing} not installed)" in lines[0] and "pip install 'thrifty[bench]'" in lines[0], text
    assert not out.exists() and not (tmp_path / "cache").exists()
