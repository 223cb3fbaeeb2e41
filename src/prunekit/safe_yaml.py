"""Read a YAML file that may be hostile or broken, in bounded time and memory, or fail in one line.

Why: ``yaml.safe_load`` constructs no arbitrary objects, but it still trusts the *shape* of its
input. A "billion laughs" document (aliases of aliases, a few hundred bytes) expands to 10⁹
nodes the moment anything walks it; 5,000 nested brackets exhaust Python's recursion; a 50 MB
comment takes minutes; a duplicate key silently wins over the first; a binary or non-UTF-8 file
raises a bare ``UnicodeDecodeError``. Here the file is size-capped before it is read, decoded
strictly as UTF-8, composed with a nesting limit, checked for how many nodes its aliases expand
to (cycles refused) *before* it is turned into Python objects, and constructed with duplicate
keys refused. Every problem is a :class:`YamlError` whose message is one line with the position.

>>> load_yaml_text("a: 1\\nb: [x, y]", "example.yaml")
{'a': 1, 'b': ['x', 'y']}
>>> load_yaml_text("a: 1\\na: 2", "example.yaml")
Traceback (most recent call last):
...
prunekit.safe_yaml.YamlError: example.yaml: key 'a' appears twice in one mapping (line 2, column 1); keep one
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_BYTES = 256_000
"""Largest recipe file read (the biggest shipped recipe is ~2 KB)."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists (a recipe needs about 8)."""
MAX_WRITTEN_NODES = 10_000
"""Most values a document may write out (a recipe has about a hundred); composing is slow."""
MAX_NODES = 100_000
"""Most values a document may have once its aliases are expanded."""


class YamlError(ValueError):
    """A YAML file that cannot be read safely; the message is one line naming where and why."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting and too many values while composing, and duplicate
    keys while building."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._written = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        self._written += 1
        try:
            if self._depth > MAX_DEPTH or self._written > MAX_WRITTEN_NODES:
                problem = (
                    f"nesting deeper than {MAX_DEPTH} levels"
                    if self._depth > MAX_DEPTH
                    else f"more than {MAX_WRITTEN_NODES:,} values"
                )
                mark = self.peek_event().start_mark
                raise yaml.MarkedYAMLError(problem=problem, problem_mark=mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *base` may be overridden by the keys beside it
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeLoader reports it below
                break
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_BoundedLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _BoundedLoader.construct_mapping
)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, mark: yaml.Mark) -> None:
        super().__init__(key)
        self.key, self.mark = key, mark


def _expanded_size(root: Node) -> int:
    """Nodes of the document with every alias expanded, without expanding anything.

    A node reached through several aliases counts once per path (that is what building it
    costs any consumer); sizes are memoised per node, so the walk is linear in the document.
    Stops counting past :data:`MAX_NODES`; raises on a cycle (an alias inside its own anchor).
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = min(MAX_NODES + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in on_path:
            raise yaml.MarkedYAMLError(
                problem="an alias refers to its own anchor (a cycle)", problem_mark=node.start_mark
            )
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise yaml.MarkedYAMLError(
                    problem="an alias refers to its own anchor (a cycle)",
                    problem_mark=child.start_mark,
                )
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _where(mark: yaml.Mark | None) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def load_yaml_text(text: str, source: str) -> Any:
    """Parse ``text`` (from ``source``, named in errors) with the limits above.

    >>> load_yaml_text("a: &x [1, 2]\\nb: *x", "aliases.yaml")
    {'a': [1, 2], 'b': [1, 2]}
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        nodes = _expanded_size(node)
        if nodes > MAX_NODES:
            raise YamlError(
                f"{source}: holds more than {MAX_NODES:,} values once its aliases are expanded "
                "(a 'billion laughs' document?); write a recipe's values out plainly"
            )
        return loader.construct_document(node)
    except _DuplicateKey as dup:
        raise YamlError(
            f"{source}: key {str(dup.key)[:60]!r} appears twice in one mapping"
            f"{_where(dup.mark)}; keep one"
        ) from None
    except yaml.MarkedYAMLError as err:
        problem = err.problem or err.context or "invalid YAML"
        raise YamlError(
            f"{source}: not valid YAML: {problem}{_where(err.problem_mark)}; fix it there"
        ) from None
    except yaml.YAMLError as err:  # the reader's errors (control characters) carry no mark
        raise YamlError(f"{source}: not valid YAML: {str(err).splitlines()[0]}") from None
    except RecursionError:
        raise YamlError(f"{source}: nested too deeply to read") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> Any:
    """Read ``path`` as UTF-8 YAML, refusing files over :data:`MAX_BYTES` before reading them."""
    file = Path(path)
    if not file.is_file():
        raise YamlError(f"{str(file)!r} does not exist or is not a file; check the path")
    size = file.stat().st_size
    if size > MAX_BYTES:
        raise YamlError(
            f"{file}: {size:,} bytes is too large for a recipe (at most {MAX_BYTES:,}); "
            "is this the right file?"
        )
    raw = file.read_bytes()[: MAX_BYTES + 1]
    if b"\x00" in raw:
        raise YamlError(f"{file}: holds NUL bytes, so it is binary, not a YAML text file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise YamlError(
            f"{file}: not UTF-8 text (byte {raw[err.start]:#04x} on line {line}); save it as UTF-8"
        ) from None
    return load_yaml_text(text, str(file))
