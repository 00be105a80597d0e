"""Load a spec (a path, a text or a dict) into plain data plus a source map.

A spec is data: loading never runs code.  YAML is read from PyYAML's event
stream (an iterative state machine), not with yaml.load, whose composer and
constructors recurse, expand aliases without bound and honour object tags; the
data is built here with an explicit stack, so depth, size and tags are ours.

Decisions: merge keys (`<<: *defaults`) are supported, explicit keys win.
Timestamps (`2020-01-01`) stay strings; !!timestamp, !!binary, !!set, !!omap,
!!pairs are refused.  A text starting with `{` is strict JSON.
"""
from __future__ import annotations

import copy
import json
import os
import re
import stat

import yaml

from ..errors import SpecError
from .source_map import Spec, format_path

__all__ = ["Spec", "load_spec", "format_path"]

_STD = "tag:yaml.org,2002:"
_MAP, _SEQ, _STR = _STD + "map", _STD + "seq", _STD + "str"
_SCALAR_TAGS = {_STR} | {_STD + t for t in ("null", "int", "float", "bool")}
# YAML 1.2 / JSON floats that YAML 1.1 reads as strings: "1e-3", "1e5", "2.5E4".
_FLOAT12 = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+\Z")
# JSON strings (possibly unterminated, so the regex never fails and rescans) or brackets.
_JSON_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_NOKEY, _MERGE = object(), object()
_TAG_HINT = ("remove the tag: a spec is data, and only the standard tags "
             "!!str, !!int, !!float, !!bool, !!null, !!map and !!seq are allowed")


def load_spec(source, *, max_bytes=10_000_000, max_depth=64, max_nodes=200_000) -> Spec:
    """Load a spec from a Spec, a dict, a path or a YAML/JSON text; SpecError on any failure."""
    if isinstance(source, Spec):
        return source
    if isinstance(source, dict):
        _check_tree(source, max_depth, max_nodes)
        try:
            return Spec(copy.deepcopy(source), None, {})
        except Exception as e:     # an uncopyable object in a hand-made dict
            raise SpecError(f"cannot copy the spec: {e}") from None
    if isinstance(source, os.PathLike):
        file = os.fsdecode(os.fspath(source))
        text = _read_file(file, max_bytes)
    elif isinstance(source, str):
        if "\n" not in source and not source.startswith("{") and os.path.exists(source):
            file, text = source, _read_file(source, max_bytes)
        elif "\n" not in source and not re.search(r":[ \t]|:\Z", source) and not source.lstrip().startswith(("{", "[")):
            # One line with no `key: value` can never be a valid spec text: a file that is not there.
            raise SpecError("no such file", file=source)
        else:
            file, text = None, source
            if len(text) > max_bytes or (len(text) * 4 > max_bytes and len(
                    text.encode("utf-8", "surrogatepass")) > max_bytes):
                raise SpecError(f"the spec text is larger than {max_bytes} bytes")
    else:
        raise SpecError(f"cannot load a spec from {type(source).__name__}",
                        hint="give a file path, a YAML/JSON text or a dict")
    text = text.removeprefix("\ufeff")
    if not text.strip(" \t\r\n"):
        raise SpecError("the spec is empty", file=file)
    if (file or "").lower().endswith(".json") or (file is None and text.lstrip().startswith("{")):
        data, positions = _load_json(text, file, max_depth, max_nodes)
    else:
        data, positions, _ = _walk(text, file, max_depth, max_nodes, strict=True)
    line, column = positions.get((), (1, 1))
    if data is None:
        raise SpecError("the spec is empty", file=file, line=line, column=column)
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean"}.get(type(data), "a number")
        raise SpecError(f"the top level of a spec must be a mapping (key: value), not {kind}",
                        file=file, line=line, column=column)
    positions.setdefault((), (1, 1))
    return Spec(data, file, positions, text)


def _check_tree(data: dict, max_depth: int, max_nodes: int) -> None:
    """A dict from Python may hold what no text can: a value that contains itself, or a tree
    deeper or larger than a text may be.  Walked with an explicit stack, so nothing recurses."""
    stack, count = [(data, (), ())], 0       # a value, its path, the ids of the containers above it
    while stack:
        value, path, above = stack.pop()
        if not isinstance(value, (dict, list)):
            continue
        if id(value) in above:
            again = format_path(path[:above.index(id(value))])
            again = f"`{again}`" if again else "the whole spec"
            raise SpecError(f"the spec contains itself: this value is {again} again", path=format_path(path),
                            hint="a spec is plain data, a tree: copy the value instead of referring back to it")
        if len(path) >= max_depth:
            raise SpecError(f"nested too deeply (more than {max_depth} levels)", path=format_path(path))
        count += len(value)
        if count > max_nodes:
            raise SpecError(f"the spec is too large (more than {max_nodes} values)", path=format_path(path))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        stack.extend((child, path + (key,), above + (id(value),)) for key, child in reversed(list(items)))


_NOT_FILES = {stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFCHR: "a character device",
              stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket"}


def _read_file(file: str, max_bytes: int) -> str:
    # Refuse what is no regular file before opening it (a FIFO's open waits for a writer, a
    # terminal's read for a user), and a file by its size before reading; then read at most
    # max_bytes + 1 in case the size lied (a file still growing).
    try:
        st = os.stat(file)
        if stat.S_ISDIR(st.st_mode):
            raise SpecError("is a directory, not a spec file", file=file)
        if not stat.S_ISREG(st.st_mode):
            kind = _NOT_FILES.get(stat.S_IFMT(st.st_mode), "no regular file")
            raise SpecError(f"is {kind}, not a spec file", file=file,
                            hint="specbuild reads regular files only: save the spec to a file first")
        if st.st_size > max_bytes:
            raise SpecError(f"the file is too large ({st.st_size} bytes; the limit is "
                            f"{max_bytes})", file=file)
        with open(file, "rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise SpecError("no such file", file=file) from None
    except (OSError, ValueError) as e:
        raise SpecError(f"cannot read the file: {getattr(e, 'strerror', None) or e}",
                        file=file) from None
    if len(raw) > max_bytes:
        raise SpecError(f"the file is larger than {max_bytes} bytes", file=file)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"the file is not UTF-8 text (byte 0x{raw[e.start]:02x})", file=file,
                        hint="save the file as UTF-8", **_where(raw, e.start)) from None


def _where(text, index: int) -> dict:
    """line and column (1-based) of an index into a str, or into bytes."""
    nl = "\n" if isinstance(text, str) else b"\n"
    return {"line": text.count(nl, 0, index) + 1, "column": index - text.rfind(nl, 0, index)}


def _load_json(text, file, max_depth, max_nodes):
    # json recurses per level: count brackets (outside strings) first.
    depth = 0
    for m in _JSON_TOKENS.finditer(text):
        c = text[m.start()]
        if c in "[{":
            depth += 1
            if depth > max_depth:
                raise SpecError(f"nested too deeply (more than {max_depth} levels)",
                                file=file, **_where(text, m.start()))
        elif c in "]}":
            depth -= 1
    dups = []

    def pairs_hook(pairs):
        obj = {}
        for k, v in pairs:
            if k in obj:
                dups.append(k)
            obj[k] = v
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as e:
        hint = None if file else "a text that starts with '{' is read as JSON"
        raise SpecError(f"invalid JSON: {e.msg}", file=file, line=e.lineno, column=e.colno,
                        hint=hint) from None
    except (ValueError, RecursionError) as e:   # e.g. an integer with too many digits
        raise SpecError(f"invalid JSON: {e}", file=file) from None
    # Positions are best effort: JSON is (nearly) YAML, so walk it as YAML.
    try:
        _, positions, walked_dups = _walk(text, file, max_depth, max_nodes, strict=False)
    except SpecError:
        positions, walked_dups = {}, []
    if dups:    # json keeps the last silently; the walk knows both lines
        raise (walked_dups or [SpecError(f"duplicate key {dups[0]!r}", file=file)])[0]
    return data, positions


def _events(text, file):
    """PyYAML's events, its errors turned into SpecErrors."""
    events = yaml.parse(text, Loader=yaml.SafeLoader)
    while True:
        try:
            event = next(events)
        except StopIteration:
            return
        except yaml.MarkedYAMLError as e:
            raise _yaml_error(e, file) from None
        except yaml.reader.ReaderError as e:
            raise SpecError(f"unacceptable character #x{e.character:04x}: {e.reason}",
                            file=file, **_where(text, e.position)) from None
        except Exception as e:      # PyYAML failing on hostile input (e.g. a 5000-digit %YAML)
            raise SpecError(f"cannot parse the YAML: {e}", file=file) from None
        yield event


def _yaml_error(e, file):
    mark = e.problem_mark or e.context_mark
    message = e.problem or e.context or "invalid YAML"
    if e.problem and e.context:
        message += f" ({e.context})"
    hint = None
    if mark is not None and mark.buffer:
        start = mark.buffer.rfind("\n", 0, mark.pointer) + 1
        line = mark.buffer[start:mark.pointer + 1]
        if "\\t" in (e.problem or "") or "\t" in line[:len(line) - len(line.lstrip(" \t"))]:
            hint = "YAML forbids tabs for indentation; use spaces"
    return SpecError(message, file=file, line=mark and mark.line + 1,
                     column=mark and mark.column + 1, hint=hint)


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_STD):] if tag.startswith(_STD) else tag


def _check_tag(tag, allowed, what, fail, pos):
    if tag is not None and tag not in allowed:
        if tag in _SCALAR_TAGS or tag in (_MAP, _SEQ):
            raise fail(f"tag {_tag_name(tag)} cannot apply to {what}", pos)
        raise fail(f"tag {_tag_name(tag)} is not allowed", pos, _TAG_HINT)


class _Frame:
    __slots__ = ("kind", "value", "path", "pos", "anchor", "start_nodes", "height",
                 "key", "key_pos", "keys", "merge")

    def __init__(self, kind, path, pos, anchor, start_nodes):
        self.kind, self.path, self.pos, self.anchor = kind, path, pos, anchor
        self.value = {} if kind == "map" else []
        self.start_nodes, self.height = start_nodes, 0
        self.key, self.key_pos, self.keys, self.merge = _NOKEY, None, {}, None


def _walk(text, file, max_depth, max_nodes, strict):
    """Build the data from YAML events with an explicit stack.
    Returns (data, positions, duplicate-key errors); in strict mode those raise."""
    positions, anchors, stack, dups = {}, {}, [], []
    root, nodes, documents = None, 0, 0
    too_deep = f"nested too deeply (more than {max_depth} levels)"
    not_plain_key = "a mapping key must be a plain value, not a mapping or list"

    def fail(message, pos, hint=None):
        return SpecError(message, file=file, line=pos[0], column=pos[1], hint=hint)

    def awaiting_key():
        return bool(stack) and stack[-1].kind == "map" and stack[-1].key is _NOKEY

    def attach(value, height, pos):
        nonlocal root
        if not stack:
            root, positions[()] = value, pos
            return
        top = stack[-1]
        top.height = max(top.height, height)
        if top.kind == "seq":
            positions[top.path + (len(top.value),)] = pos
            top.value.append(value)
        elif top.key is _NOKEY:         # this scalar is a key
            if value in top.keys:
                err = fail(f"duplicate key {'<<' if value is _MERGE else value!r}: first at line "
                           f"{top.keys[value][0]}, again at line {pos[0]}", pos,
                           "YAML would silently keep only the last one")
                if strict:
                    raise err
                dups.append(err)
            top.key = value
            top.key_pos = top.keys[value] = pos
        else:
            if top.key is _MERGE:
                top.merge = (value, top.key_pos)
            else:
                top.value[top.key] = value
                positions[top.path + (top.key,)] = top.key_pos
            top.key = _NOKEY

    def count(n, pos, alias=None):
        nonlocal nodes
        nodes += n
        if nodes > max_nodes and alias is None:
            raise fail(f"the spec is too large (more than {max_nodes} values)", pos)
        elif nodes > max_nodes:
            raise fail(f"alias expansion too large: *{alias} would make more than {max_nodes} "
                       "values", pos, "aliases that multiply ('billion laughs') are refused")

    for ev in _events(text, file):
        pos = (ev.start_mark.line + 1, ev.start_mark.column + 1)
        if isinstance(ev, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise fail("a spec file holds one YAML document; found another", pos,
                           "remove the second '---' document or split the file")
        elif isinstance(ev, yaml.ScalarEvent):
            _check_tag(ev.tag, _SCALAR_TAGS, "a plain value", fail, pos)
            value = _scalar(ev, awaiting_key(), fail, pos)
            count(1, pos)
            if ev.anchor:
                anchors[ev.anchor] = (value, 1, 0)
            attach(value, 0, pos)
        elif isinstance(ev, yaml.AliasEvent):
            if ev.anchor not in anchors:
                raise fail(f"unknown alias *{ev.anchor}", pos,
                           "an alias must follow its complete &anchor")
            value, n, height = anchors[ev.anchor]
            if awaiting_key() and isinstance(value, (dict, list)):
                raise fail(not_plain_key, pos)
            if len(stack) + height > max_depth:
                raise fail(too_deep, pos)
            count(n, pos, alias=ev.anchor)      # before copying: a bomb is never built
            attach(_copy(value), height, pos)
        elif isinstance(ev, yaml.CollectionStartEvent):
            kind = "map" if isinstance(ev, yaml.MappingStartEvent) else "seq"
            _check_tag(ev.tag, {_MAP if kind == "map" else _SEQ},
                       "a mapping" if kind == "map" else "a list", fail, pos)
            if awaiting_key():
                raise fail(not_plain_key, pos)
            if len(stack) >= max_depth:
                raise fail(too_deep, pos)
            count(1, pos)
            path = ()
            if stack:   # entries under `<<` are kept apart from the mapping's own keys
                top = stack[-1]
                path = top.path + ((len(top.value),) if top.kind == "seq" else
                                   ("<<" if top.key is _MERGE else top.key,))
            stack.append(_Frame(kind, path, pos, ev.anchor, nodes - 1))
        elif isinstance(ev, yaml.CollectionEndEvent):
            frame = stack.pop()
            if frame.merge is not None:
                frame.value = _merge(frame, positions, fail)
            height = frame.height + 1
            if frame.anchor:
                anchors[frame.anchor] = (frame.value, nodes - frame.start_nodes, height)
            attach(frame.value, height, frame.pos)
    return root, positions, dups


def _scalar(ev, is_key, fail, pos):
    """A scalar's value, resolved like SafeLoader does, but with YAML 1.2's floats (1e-3) and booleans."""
    tag, value = ev.tag, ev.value
    if tag is None:
        tag = _RESOLVER.resolve(yaml.ScalarNode, value, ev.implicit)
        if tag == _STD + "merge":
            return _MERGE if is_key else value
        if tag == _STR and ev.implicit[0] and _FLOAT12.match(value):
            return float(value)
        # YAML 1.2 booleans only: YAML 1.1 reads `on:` (a spec key!), yes, no and off as booleans,
        # and 1:30 as the base-60 number 90.
        if (tag == _STD + "bool" and value.lower() not in ("true", "false")) \
                or (tag in (_STD + "int", _STD + "float") and ":" in value):
            return value
    if tag == _STR or tag not in _SCALAR_TAGS:      # timestamps, `=`: keep the text
        return value
    try:
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, yaml.ScalarNode(tag, value))
    except Exception:
        if ev.tag is not None:
            raise fail(f"cannot read {value!r} as {_tag_name(tag)}", pos) from None
        return value        # an implicit "0x_" or a 5000-digit integer: keep the text


def _merge(frame, positions, fail):
    """Apply `<<`: merged mappings first (earlier ones win), explicit keys over them."""
    value, key_pos = frame.merge
    sources = value if isinstance(value, list) else [value]
    if not all(isinstance(s, dict) for s in sources):
        raise fail("'<<' merges mappings only (a mapping or a list of mappings)", key_pos)
    merged = {}
    for source in reversed(sources):
        merged.update(source)
    for key in merged:
        positions.setdefault(frame.path + (key,), key_pos)
    merged.update(frame.value)
    return merged


def _copy(value):
    # An alias gets its own copy, so editing one place never changes another.
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    if type(value) is list:
        return [_copy(v) for v in value]
    return value
