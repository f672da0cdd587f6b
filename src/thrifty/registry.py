"""One registry type for every kind of component (strategies, features, students, teachers, synthesizers).

A :class:`Registry` maps a name to what builds the component (a class or factory whose keyword
parameters are the spec parameters, ``mraru[exponent=3]``). Built-ins register in their package;
third parties register through an entry point of the registry's group, e.g. in a plug-in's
``pyproject.toml``::

    [project.entry-points."thrifty.strategies"]
    mystrategy = "my_package.strategy:MyStrategy"

Entry points are discovered on the first lookup of a name that is not built in, or when the names
are listed, and each is imported only when it is asked for: a plug-in that fails to import breaks
nothing else, and asking for it raises one :class:`~thrifty.errors.ConfigError` line naming its
distribution and entry point.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar, overload

from .errors import ConfigError

T = TypeVar("T")
log = logging.getLogger("thrifty")
_NAME = re.compile(r"[a-z][a-z0-9_]*")  # what a spec can spell (see Registry._discover)


class Registry(Mapping[str, T], Generic[T]):
    """Names -> components of one kind (``what``), built-ins first, then the entry points of ``group``.

    Read it as a mapping (``REG[name]``, ``name in REG``, ``sorted(REG)``); :meth:`get` is the same
    lookup. :meth:`register` adds a built-in (also usable as a decorator)."""

    def __init__(self, what: str, group: str) -> None:
        self.what = what
        self.group = group
        self._items: dict[str, T] = {}  # built-ins
        self._plugins: dict[str, EntryPoint] | None = None  # entry points, once discovered
        self._loaded: dict[str, T] = {}  # plug-ins imported so far

    # ---- registering ----------------------------------------------------------------------------
    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: T | None = None) -> T | Callable[[T], T]:
        """Add ``obj`` under ``name`` (or, without ``obj``, return a decorator that does); a name is taken once."""
        def add(o: T) -> T:
            if name in self._items and self._items[name] is not o:
                raise ConfigError(f"A {self.what} named {name!r} is already registered ({self._items[name]!r}).")
            self._items[name] = o
            return o

        return add if obj is None else add(obj)

    # ---- reading ---------------------------------------------------------------------------------
    def get(self, name: str) -> T:  # type: ignore[override]  # raises instead of returning a default
        """The component called ``name``; a :class:`ConfigError` listing the choices when there is none."""
        if name in self._items:
            return self._items[name]
        if name in self._loaded:
            return self._loaded[name]
        ep = self._discover().get(name)
        if ep is None:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown {self.what} {name!r}; choose from {self.names()}.{hint}")
        try:
            obj = ep.load()
        except Exception as e:  # a plug-in's own bug: report it in one line, keep the rest working
            why = (str(e).strip().splitlines() or [""])[0]
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
            raise ConfigError(
                f"The {self.what} plug-in {name!r} (entry point '{ep.name} = {ep.value}' in group {self.group!r}, "
                f"from {dist}) failed to load: {type(e).__name__}: {why}. Fix or uninstall that package."
            ) from None
        self._loaded[name] = obj
        return obj

    def built_in(self) -> list[str]:
        """The names registered in code (no plug-ins), in registration order."""
        return list(self._items)

    def names(self) -> list[str]:
        """Every name, built-in and plug-in, sorted (plug-ins are not imported to list them)."""
        return sorted(set(self._items) | set(self._discover()))

    def items(self) -> list[tuple[str, T]]:  # type: ignore[override]
        """(name, component) for every name that loads; a plug-in that fails to import is left out here."""
        out = []
        for name in self.names():
            try:
                out.append((name, self.get(name)))
            except ConfigError:
                pass
        return out

    def values(self) -> list[T]:  # type: ignore[override]
        return [obj for _, obj in self.items()]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._items or (isinstance(name, str) and name in self._discover())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, group={self.group!r}, built_in={sorted(self._items)})"

    def _discover(self) -> dict[str, EntryPoint]:
        """The group's entry points not shadowed by a built-in (looked up once; first distribution wins),
        under the name a spec can spell: lower case, ``-`` as ``_`` (specs use ``-`` between features and
        classifier and ``:`` before a teacher's argument, and lower-case names). Others are skipped, said once."""
        if self._plugins is None:
            found: dict[str, EntryPoint] = {}
            for ep in entry_points(group=self.group):
                name = ep.name.lower().replace("-", "_")
                if not _NAME.fullmatch(name):
                    log.warning("Skipping the %s plug-in %r (group %s): a name must be letters, digits and _.",
                                self.what, ep.name, self.group)
                elif name not in self._items:
                    found.setdefault(name, ep)
            self._plugins = found
        return self._plugins


__all__ = ["Registry"]
