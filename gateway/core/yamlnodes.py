"""Typed reading of YAML files that keeps line numbers, for `file:line:col: message` errors.

PyYAML's composer gives nodes with positions; `Section` wraps a mapping node
and hands out typed values, collecting every problem instead of stopping at
the first, and reporting keys nobody asked for (typos such as `burts:`).
Configuration and policy files both read through this module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TypeVar

import yaml

from gateway.errors import ConfigError, ConfigProblem

__all__ = ["Problems", "Section", "compose_file", "compose_text", "decode_text",
           "parse_duration", "parse_size"]

T = TypeVar("T")

# libyaml's parser when PyYAML has it: the same nodes and marks, ten times faster (a
# reload re-reads every file; the fuzz tests read thousands).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_FILE = 16 * 1024 * 1024  # a configuration or policy file larger than this is a mistake

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_MAX_DURATION = 100 * 365 * 86400.0  # longer is a typo, and would overflow time arithmetic
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB|k|K|M|G)?\s*$")
_SIZE_UNITS = {
    None: 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3,
    "k": 1024, "K": 1024, "KiB": 1024, "M": 1024**2, "MiB": 1024**2, "G": 1024**3, "GiB": 1024**3,
}


def parse_duration(text: str | int | float) -> float:
    """'90s', '5m', '1.5h', '5d', or a number of seconds → seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        seconds = float(text) if abs(text) <= _MAX_DURATION else math.inf
    else:
        m = _DURATION.match(str(text))
        if not m:
            raise ValueError(f"'{str(text)[:60]}' is not a duration (use e.g. 30s, 5m, 1h, 5d)")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not seconds <= _MAX_DURATION:  # also NaN
        raise ValueError("a duration must be at most 100 years")
    return seconds


def parse_size(text: str | int) -> int:
    """'25MiB', '10MB', '512k', or a number of octets → octets."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"'{text}' is not a size (use e.g. 512KiB, 25MiB, 10MB)")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)]


class Problems:
    """Collects ConfigProblems for one load; raise_if_any() ends the load."""

    def __init__(self) -> None:
        self.items: list[ConfigProblem] = []

    def add(self, file: str, node: yaml.Node | None, message: str) -> None:
        line = column = 0
        if node is not None:
            line, column = node.start_mark.line + 1, node.start_mark.column + 1
        self.items.append(ConfigProblem(file, line, column, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(sorted(self.items, key=lambda p: (p.file, p.line, p.column)))


def compose_file(path: str, problems: Problems) -> yaml.Node | None:
    """Parse a YAML file into nodes; syntax errors become problems with their position."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE + 1)
    except OSError as exc:
        problems.items.append(ConfigProblem(path, 0, 0, f"cannot read: {exc.strerror}"))
        return None
    if len(data) > MAX_FILE:
        problems.items.append(ConfigProblem(path, 0, 0, f"larger than {MAX_FILE} bytes: not "
                                            "a configuration file"))
        return None
    text = decode_text(path, data, problems)
    return None if text is None else compose_text(path, text, problems)


def decode_text(path: str, data: bytes, problems: Problems) -> str | None:
    """UTF-8 text, or a problem at the first byte that is not (line:column of it)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[:exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        problems.items.append(ConfigProblem(path, line, column, "not UTF-8 text (byte "
                                            f"0x{data[exc.start]:02x}): is this the right file?"))
        return None


def compose_text(path: str, text: str, problems: Problems) -> yaml.Node | None:
    """compose_file() for text already read (`path` names it in problems)."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
        if root is not None and not _values_readable(path, root, problems):
            return None
        return root
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        what = exc.problem or "invalid YAML"
        problems.items.append(ConfigProblem(path, line, col, f"YAML syntax: {what}"))
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, …)
        line, col = _position(text, exc.position)
        problems.items.append(ConfigProblem(path, line, col, f"YAML syntax: character "
                                            f"{exc.character!r} is not allowed"))
    except yaml.YAMLError as exc:
        problems.items.append(ConfigProblem(path, 0, 0, f"YAML syntax: {exc}"))
    except RecursionError:
        problems.items.append(ConfigProblem(path, 0, 0, "YAML syntax: nested too deeply"))
    return None


_TAGS = {f"tag:yaml.org,2002:{t}" for t in
         ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")}


def _values_readable(path: str, root: yaml.Node, problems: Problems) -> bool:
    """Every node has a plain YAML tag and every scalar a value (a `!!python/…` tag,
    `!!int x` or the date 2024-13-45 is reported at its place, once)."""
    ok = True
    seen: set[int] = set()
    stack = [root]
    loader = yaml.SafeLoader("")
    try:
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue  # an alias: checked once
            seen.add(id(node))
            why = None
            if node.tag not in _TAGS:
                why = f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed"
            elif isinstance(node, yaml.ScalarNode):
                if node.tag == "tag:yaml.org,2002:str":
                    continue  # text is always text
                try:
                    loader.construct_object(node, deep=True)
                except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
                    why = f"'{node.value[:40]}' cannot be read: {_first_line(exc)}"
            elif isinstance(node, yaml.MappingNode):
                stack.extend(n for pair in node.value for n in pair)
            else:
                stack.extend(node.value)
            if why is not None:
                problems.add(path, node, why)
                ok = False
    finally:
        loader.dispose()
    return ok


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "problem", None) or str(exc)
    return str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__


def _position(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    return before.count("\n") + 1, index - (before.rfind("\n") + 1) + 1


def _scalar(node: yaml.Node) -> object:
    """The Python value of a scalar node, with YAML 1.1 typing (ints, bools, null).

    A value its tag cannot make (`!!int x`, the timestamp 2024-13-45, `!!python/…`)
    is taken as its text, which the typed getters then refuse with the key's place."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError):
        return node.value if isinstance(node.value, str) else f"<{node.tag}>"
    finally:
        loader.dispose()


class Section:
    """A YAML mapping read key by key; call done() to report keys that were not used."""

    def __init__(self, file: str, node: yaml.Node | None, problems: Problems, where: str) -> None:
        self.file = file
        self.problems = problems
        self.where = where
        self.node = node
        self._items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        self._used: set[str] = set()
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            return
        if not isinstance(node, yaml.MappingNode):
            self.problems.add(file, node, f"{where or 'the file'} must be a mapping of keys")
            return
        for key_node, value_node in node.value:
            key = str(_scalar(key_node))
            if key in self._items:
                self.problems.add(file, key_node, f"duplicate key '{key}'")
            self._items[key] = (key_node, value_node)

    # -- plumbing ---------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self._items

    def keys(self) -> list[str]:
        return list(self._items)

    def value_node(self, key: str) -> yaml.Node | None:
        self._used.add(key)
        item = self._items.get(key)
        return item[1] if item else None

    def error(self, key: str | None, message: str) -> None:
        node = self._items[key][1] if key in self._items else self.node
        self.problems.add(self.file, node, message)

    def _name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, default: T, convert: Callable[[object], T], kind: str) -> T:
        node = self.value_node(key)
        if node is None:
            return default
        if not isinstance(node, yaml.ScalarNode):
            self.problems.add(self.file, node, f"'{self._name(key)}' must be {kind}")
            return default
        raw = _scalar(node)
        if raw is None:
            return default
        try:
            return convert(raw)
        except (ValueError, TypeError, OverflowError) as exc:
            self.problems.add(self.file, node, f"'{self._name(key)}': {exc}")
            return default

    # -- typed getters ----------------------------------------------------------------------
    def get_str(self, key: str, default: str, choices: tuple[str, ...] = ()) -> str:
        def conv(raw: object) -> str:
            if isinstance(raw, (dict, list)):
                raise TypeError("must be a string")
            text = str(raw)
            if choices and text not in choices:
                raise ValueError(f"'{text}' is not one of: {', '.join(choices)}")
            return text

        return self._get(key, default, conv, "a string")

    def opt_str(self, key: str) -> str | None:
        value = self.get_str(key, "")
        return value or None

    def get_int(self, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        def conv(raw: object) -> int:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise TypeError(f"'{raw}' is not a whole number")
            if raw < minimum or (maximum is not None and raw > maximum):
                hi = f" and {maximum}" if maximum is not None else ""
                raise ValueError(f"{raw} must be at least {minimum}{hi}")
            return raw

        return self._get(key, default, conv, "a whole number")

    def opt_int(self, key: str, minimum: int = 0) -> int | None:
        node = self.value_node(key)
        if node is None or (isinstance(node, yaml.ScalarNode) and _scalar(node) is None):
            return None
        return self.get_int(key, minimum, minimum)

    def get_bool(self, key: str, default: bool) -> bool:
        def conv(raw: object) -> bool:
            if not isinstance(raw, bool):
                raise TypeError(f"'{raw}' is not true or false")
            return raw

        return self._get(key, default, conv, "true or false")

    def duration(self, key: str, default: float) -> float:
        return self._get(key, default, lambda raw: parse_duration(raw), "a duration")  # type: ignore[arg-type]

    def opt_duration(self, key: str) -> float | None:
        node = self.value_node(key)
        if node is None or (isinstance(node, yaml.ScalarNode) and _scalar(node) is None):
            return None
        return self.duration(key, 0.0)

    def size(self, key: str, default: int) -> int:
        return self._get(key, default, lambda raw: parse_size(raw), "a size")  # type: ignore[arg-type]

    def str_list(self, key: str) -> tuple[tuple[str, yaml.Node], ...]:
        """A list of scalars, each with its node (so callers can point at a bad item)."""
        node = self.value_node(key)
        if node is None:
            return ()
        if isinstance(node, yaml.ScalarNode) and _scalar(node) is None:
            return ()
        if not isinstance(node, yaml.SequenceNode):
            self.problems.add(self.file, node, f"'{self._name(key)}' must be a list")
            return ()
        out = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode):
                self.problems.add(self.file, item, f"'{self._name(key)}' items must be strings")
                continue
            out.append((str(_scalar(item)), item))
        return tuple(out)

    def section(self, key: str) -> Section:
        return Section(self.file, self.value_node(key), self.problems, self._name(key))

    def sections(self, key: str) -> list[Section]:
        node = self.value_node(key)
        if node is None:
            return []
        if not isinstance(node, yaml.SequenceNode):
            self.problems.add(self.file, node, f"'{self._name(key)}' must be a list")
            return []
        return [
            Section(self.file, item, self.problems, f"{self._name(key)}[{i}]")
            for i, item in enumerate(node.value)
        ]

    def mapping(self, key: str) -> list[tuple[str, str, yaml.Node]]:
        """A mapping of string to string (e.g. users → hashes), with value nodes."""
        sub = self.section(key)
        out: list[tuple[str, str, yaml.Node]] = []
        for name in sub.keys():  # noqa: SIM118 (Section is not a dict)
            node = sub.value_node(name)
            if not isinstance(node, yaml.ScalarNode):
                self.problems.add(self.file, node, f"'{self._name(key)}.{name}' must be a string")
                continue
            out.append((name, str(_scalar(node)), node))
        return out

    def done(self) -> None:
        for key, (key_node, _) in self._items.items():
            if key not in self._used:
                where = f" in '{self.where}'" if self.where else ""
                self.problems.add(self.file, key_node, f"unknown key '{key}'{where}")
