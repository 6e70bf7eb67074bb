"""A named collection of extension points (output metrics, explainers, run backends,
architectures, step rules, analyses, experiments, commands): one way to register, list and look
them up, with one clear error."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from .errors import InputError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects of one kind by name, in registration order.

    ``kind`` names the kind in messages ("unknown output metric 'x'; choose one of [...]");
    ``items`` are registered first, in their order. Read like a mapping: ``registry[name]``
    (as ``get``), ``name in registry``, ``list(registry)`` (the names), ``registry.items()``,
    so a CLI's choices come from the registry itself.
    """

    def __init__(self, kind: str, items: Mapping[str, T] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        for name, obj in (items or {}).items():
            self.register(name, obj)

    def register(self, name: str, obj: T, *, replace: bool = False) -> T:
        """Add ``obj`` as ``name``; an existing name is an error unless ``replace``."""
        if not isinstance(name, str) or not name:
            raise InputError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._items and not replace:
            raise InputError(f"{self.kind} {name!r} is already registered")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; InputError listing the choices if there is none."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise InputError(
                f"unknown {self.kind} {name!r}; choose one of {self.names()}"
            ) from None

    def find(self, name: str) -> T | None:
        """The object registered as ``name``, or None."""
        return self._items.get(name)

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs in registration order."""
        return list(self._items.items())

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)
