"""JSON Schema validation of description documents, with located, human error messages.

The schemas are package data (`svcnet.resources.schemas()`, copied to the repository's
`schemas/` for users), JSON Schema draft 2020-12, and reference each other by relative `$ref`
(`defs.schema.json#/$defs/ip`).  They carry no `$id`, so the same files work
from a user's CI (`check-jsonschema --schemafile schemas/service.schema.json svc.yaml`) and
in editors; here they are registered under an internal base URI.

Validation uses jsonschema-rs when available (`is_valid` fast path, `iter_errors` only for
invalid documents) and python-jsonschema otherwise, or for documents jsonschema-rs cannot
convert (YAML timestamps, non-string keys).  Two vendor keywords drive the messages and the
unknown-field report:

* ``x-svcnet-expected``: what a value should be ("a valid IPv4 or IPv6 address"), used
  instead of dumping a regex or an anyOf failure;
* ``x-svcnet-ignored``: Kubernetes fields svcnet accepts but does not use (not "unknown").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources.abc import Traversable
from typing import Any
from urllib.parse import unquote, urljoin

from svcnet import resources

try:  # the fast path; python-jsonschema is the fallback
    import jsonschema_rs
except ImportError:  # pragma: no cover - exercised only where jsonschema-rs is missing
    jsonschema_rs = None  # type: ignore[assignment]

Path_ = tuple[str | int, ...]

BASE_URI = "https://svcnet.invalid/schemas/"  # internal only: the files have no $id
SCHEMA_SUFFIX = ".schema.json"
DEFS_KEY = "defs"
EXPECTED = "x-svcnet-expected"
IGNORED = "x-svcnet-ignored"

_JSON_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
    "object": "a mapping",
    "array": "a list",
}
_MAX_SHOWN = 60


@dataclass(frozen=True)
class SchemaError:
    """One violation: where (path into the document) and what, in words."""

    path: Path_
    message: str

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.message}"


def format_path(path: Iterable[str | int]) -> str:
    """`('spec', 'ports', 0, 'port')` -> `spec.ports[0].port`; the root is `(document)`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _path_key(path: Path_) -> tuple[tuple[int, int | str], ...]:
    """Sort key for mixed str/int paths (list indices sort numerically, before names)."""
    return tuple((0, p) if isinstance(p, int) and not isinstance(p, bool) else (1, str(p)) for p in path)


@dataclass(frozen=True)
class _Raw:
    """A library-neutral validation failure: keyword, the schema holding it, the instance."""

    path: Path_
    keyword: str
    instance: Any
    schema: Mapping[str, Any]


class _Level:
    """What the schemas applying at one instance location say about its fields."""

    def __init__(self, schemas: list[tuple[dict[str, Any], str]]) -> None:
        self.declared = any("properties" in s for s, _ in schemas)
        self.ignored = frozenset(f for s, _ in schemas for f in s.get(IGNORED, ()))
        self.maps = tuple(
            (s["additionalProperties"], b) for s, b in schemas if isinstance(s.get("additionalProperties"), dict)
        )
        self.items = tuple((s["items"], b) for s, b in schemas if isinstance(s.get("items"), dict))
        props: dict[str, list[tuple[Any, str]]] = {}
        for s, b in schemas:
            for name, sub in (s.get("properties") or {}).items():
                props.setdefault(name, []).append((sub, b))
        self.properties = {name: tuple(subs) for name, subs in props.items()}
        # Memo of the level below each field (None: undeclared) and below list items.
        self.children: dict[object, _Level | None] = {}
        self.item_level: _Level | None = None


class Schemas:
    """The loaded schema set: one validator per key (`service`, `cluster`, ...)."""

    def __init__(self, documents: dict[str, dict[str, Any]], *, use_rust: bool = True) -> None:
        self._docs = documents  # key ("service") -> schema document
        self._by_uri = {_uri(k): d for k, d in documents.items()}
        self._kinds = _kind_table(documents)
        self._py_validators: dict[str, Any] | None = None  # built on first use (a fallback with jsonschema-rs)
        self._rs = _rust_validators(documents) if use_rust else {}
        self._levels: dict[tuple[tuple[int, str], ...], _Level] = {}  # unknown-field walker memo

    @classmethod
    def load(cls, directory: Traversable | None = None, *, use_rust: bool = True) -> Schemas:
        """Read every `*.schema.json` of `directory` (a Path will do; default: the shipped schemas).

        `use_rust=False` forces python-jsonschema (for comparisons and tests).
        """
        directory = directory or resources.schemas()
        found = sorted((p for p in directory.iterdir() if p.name.endswith(SCHEMA_SUFFIX)), key=lambda p: p.name)
        docs = {p.name[: -len(SCHEMA_SUFFIX)]: json.loads(p.read_text(encoding="utf-8")) for p in found}
        if DEFS_KEY not in docs:
            raise FileNotFoundError(f"no {DEFS_KEY}{SCHEMA_SUFFIX} in {directory}")
        return cls(docs, use_rust=use_rust)

    @property
    def keys(self) -> tuple[str, ...]:
        """Schema keys that can be validated against (everything but the shared defs)."""
        return tuple(k for k in self._docs if k != DEFS_KEY)

    @property
    def backend(self) -> str:
        return "jsonschema-rs" if self._rs else "python-jsonschema"

    def kind_key(self, api_version: str, kind: str) -> str | None:
        """`("v1", "Service")` -> `"service"`; None for kinds svcnet does not know."""
        return self._kinds.get((api_version, kind))

    def validate(self, key: str, obj: object) -> list[SchemaError]:
        """All violations of `obj` against schema `key`, sorted by path; [] when valid."""
        rs = self._rs.get(key)
        raws: Iterable[_Raw] | None = None
        if rs is not None:
            try:
                if rs.is_valid(obj):
                    return []
                raws = list(self._rust_raws(rs.iter_errors(obj), obj))
            except (ValueError, TypeError, OverflowError):
                raws = None  # not convertible to JSON for jsonschema-rs: use python-jsonschema
        if raws is None:
            if self._py_validators is None:
                self._py_validators = _python_validators(self._docs)
            raws = _python_raws(self._py_validators[key].iter_errors(obj))
        errors = {err for raw in raws for err in _humanize(raw)}
        return sorted(errors, key=lambda e: (_path_key(e.path), e.message))

    def unknown_fields(self, key: str, obj: object) -> list[tuple[Path_, str]]:
        """Fields of `obj` the schema neither declares nor lists as ignored, as (parent path, field)."""
        out: list[tuple[Path_, str]] = []
        self._walk(self._level(((self._docs[key], _uri(key)),)), obj, (), out)
        return sorted(out, key=lambda item: (_path_key(item[0]), item[1]))

    # -- unknown-field walker ------------------------------------------------------------
    def _level(self, roots: tuple[tuple[Any, str], ...]) -> _Level:
        """The (memoised) merged view of all schemas that apply at one instance location."""
        memo_key = tuple((id(s), b) for s, b in roots)
        level = self._levels.get(memo_key)
        if level is None:
            level = _Level(self._expand(list(roots)))
            self._levels[memo_key] = level
        return level

    def _expand(self, todo: list[tuple[Any, str]]) -> list[tuple[dict[str, Any], str]]:
        """Follow $ref / allOf / anyOf / oneOf / then / else to all schemas applying at one level."""
        out: list[tuple[dict[str, Any], str]] = []
        seen: set[int] = set()
        while todo:
            schema, base = todo.pop()
            if not isinstance(schema, dict) or id(schema) in seen:
                continue
            seen.add(id(schema))
            out.append((schema, base))
            if "$ref" in schema:
                todo.append(self._resolve(schema["$ref"], base))
            for word in ("allOf", "anyOf", "oneOf"):
                todo.extend((s, base) for s in schema.get(word, ()))
            todo.extend((schema[w], base) for w in ("then", "else") if w in schema)
        return out

    def _resolve(self, ref: str, base: str) -> tuple[Any, str]:
        uri, _, fragment = urljoin(base, ref).partition("#")
        return _pointer(self._by_uri[uri], fragment), uri

    def _child(self, level: _Level, field: object) -> _Level | None:
        """The level below `field` (memoised on the level), or None if the field is undeclared."""
        try:
            return level.children[field]
        except KeyError:
            subs = level.properties.get(field, ()) if isinstance(field, str) else ()
            child = self._level(subs or level.maps) if (subs or level.maps) else None
            level.children[field] = child
            return child

    def _walk(self, level: _Level, obj: object, path: Path_, out: list[tuple[Path_, str]]) -> None:
        if isinstance(obj, list):
            if level.items:
                if level.item_level is None:
                    level.item_level = self._level(level.items)
                child = level.item_level
                for i, value in enumerate(obj):
                    if isinstance(value, dict | list):
                        self._walk(child, value, (*path, i), out)
        elif isinstance(obj, dict):
            ignored = level.ignored
            for field, value in obj.items():
                if field in ignored:
                    continue
                sub = self._child(level, field)
                if sub is not None:
                    if isinstance(value, dict | list):
                        self._walk(sub, value, (*path, field), out)
                elif level.declared:
                    out.append((path, str(field)))

    # -- jsonschema-rs error conversion --------------------------------------------------
    def _rust_raws(self, errors: Iterable[Any], obj: object) -> Iterator[_Raw]:
        for err in errors:
            keyword = err.kind.name
            path = tuple(err.instance_path)
            if keyword == "propertyNames":  # report the offending key itself
                inner = err.kind.as_dict()["error"]
                yield _Raw((*path, inner.instance), inner.kind.name, inner.instance, self._rust_schema(inner))
            else:  # the original value: jsonschema-rs shows inf/nan as null
                yield _Raw(path, keyword, _value_at(obj, path, err.instance), self._rust_schema(err))

    def _rust_schema(self, err: Any) -> Mapping[str, Any]:
        """The schema object holding the failed keyword, from its absolute location."""
        location = err.absolute_keyword_location or ""
        uri, _, fragment = location.partition("#")
        doc = self._by_uri.get(uri)
        if doc is None:
            return {}
        parent = _pointer(doc, fragment.rsplit("/", 1)[0])
        return parent if isinstance(parent, dict) else {}


# -- construction helpers ------------------------------------------------------------------
def _uri(key: str) -> str:
    return BASE_URI + key + SCHEMA_SUFFIX


def _pointer(doc: Any, fragment: str) -> Any:
    """Resolve a JSON pointer fragment (`/$defs/ip`) inside `doc`."""
    node = doc
    for token in filter(None, unquote(fragment).split("/")):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def _value_at(obj: Any, path: Path_, default: Any) -> Any:
    """The value at `path` inside `obj`, or `default` if the path does not lead anywhere."""
    try:
        for part in path:
            obj = obj[part]
    except (KeyError, IndexError, TypeError):
        return default
    return obj


def _kind_table(documents: Mapping[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(apiVersion, kind) -> key, read from each schema's `apiVersion`/`kind` consts."""
    table = {}
    for key, doc in documents.items():
        props = doc.get("properties", {})
        api, kind = props.get("apiVersion", {}).get("const"), props.get("kind", {}).get("const")
        if isinstance(api, str) and isinstance(kind, str):
            table[(api, kind)] = key
    return table


@lru_cache(maxsize=512)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    """Compile with ECMA-262 `$` semantics: a final `$` matches only at the very end (not before '\\n')."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern_keyword(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    import jsonschema

    if validator.is_type(instance, "string") and not _ecma_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


@lru_cache(maxsize=1)
def _py_validator_class() -> Any:
    import jsonschema  # imported only when needed: a tenth of every command's start-up otherwise

    return jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern_keyword})


def _python_validators(documents: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    import referencing
    import referencing.jsonschema

    # Without "$schema", python-jsonschema keeps our class (ECMA `$`) when following a $ref
    # instead of switching to the stock validator the dialect URI names.
    validator_class = _py_validator_class()
    spec = referencing.jsonschema.DRAFT202012
    registry: referencing.Registry = referencing.Registry().with_resources(
        (_uri(k), spec.create_resource({w: v for w, v in d.items() if w != "$schema"})) for k, d in documents.items()
    )
    return {k: validator_class({"$ref": _uri(k)}, registry=registry) for k in documents}


def _rust_validators(documents: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    if jsonschema_rs is None:
        return {}
    registry = jsonschema_rs.Registry([(_uri(k), d) for k, d in documents.items()])
    return {k: jsonschema_rs.validator_for(d, registry=registry, base_uri=_uri(k)) for k, d in documents.items()}


def _python_raws(errors: Iterable[Any]) -> Iterator[_Raw]:
    """python-jsonschema's ValidationErrors as raw errors."""
    for err in errors:
        path = tuple(err.absolute_path)
        if "propertyNames" in err.relative_schema_path:
            path = (*path, err.instance)
        yield _Raw(path, str(err.validator), err.instance, err.schema if isinstance(err.schema, dict) else {})


# -- messages --------------------------------------------------------------------------------
def _show(value: Any) -> str:
    """A short, YAML-flavoured rendering of a value for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _type_name(value: Any) -> str:
    for name, cls in (
        ("boolean", bool),
        ("integer", int),
        ("number", float),
        ("string", str),
        ("mapping", dict),
        ("list", list),
    ):
        if isinstance(value, cls):
            return name
    return "null" if value is None else type(value).__name__


def _is_not(raw: _Raw, expected: str) -> str:
    if isinstance(raw.instance, dict | list):
        return f"must be {expected}"
    return f"{_show(raw.instance)} is not {expected}"


def _humanize(raw: _Raw) -> list[SchemaError]:
    """One raw failure -> located message(s); required/unknown fields point at the field."""
    s, v, word = raw.schema, raw.instance, raw.keyword
    expected = s.get(EXPECTED)
    if word == "required":
        present = v if isinstance(v, dict) else {}
        return [
            SchemaError((*raw.path, p), "is a required property") for p in s.get("required", ()) if p not in present
        ]
    if word == "additionalProperties" and isinstance(v, dict):
        props = s.get("properties", {})
        pats = [_ecma_regex(p) for p in s.get("patternProperties", {})]
        extra = [k for k in v if k not in props and not (isinstance(k, str) and any(p.search(k) for p in pats))]
        return [SchemaError((*raw.path, k), f"unknown field {_show(k)}") for k in extra]
    return [SchemaError(raw.path, _message(raw, word, s, v, expected))]


def _message(raw: _Raw, word: str, s: Mapping[str, Any], v: Any, expected: str | None) -> str:
    if expected:  # the schema says what it wants: one message for type/length/pattern/... failures
        return _is_not(raw, expected)
    if word == "type":
        types = s.get("type")
        names = [str(t) for t in (types if isinstance(types, list) else [types])]
        wanted = " or ".join(_JSON_TYPES.get(t, t) for t in names)
        shown = "" if isinstance(v, dict | list) or v is None else " " + _show(v)
        return f"must be {wanted}, got {_type_name(v)}{shown}"
    if word == "enum":
        return f"{_show(v)} is not one of: " + ", ".join(_show(o) for o in s.get("enum", ()))
    if word == "const":
        return f"must be {_show(s.get('const'))}, got {_show(v)}"
    if word in ("minimum", "maximum"):
        op = ">=" if word == "minimum" else "<="
        return f"must be {op} {s.get(word)}, got {_show(v)}"
    if word == "minLength":
        n = s.get("minLength")
        return "must not be empty" if n == 1 else f"must be at least {n} characters long"
    if word == "maxLength":
        got = len(v) if isinstance(v, str) else "?"
        return f"must be at most {s.get('maxLength')} characters long (got {got})"
    if word == "minItems":
        return f"must have at least {s.get('minItems')} item(s)"
    if word == "maxItems":
        return f"must have at most {s.get('maxItems')} item(s)"
    if word == "uniqueItems":
        return "must not contain duplicate items"
    if word == "pattern":
        return f"{_show(v)} does not have the expected format"
    if word in ("anyOf", "oneOf"):
        return "does not match any allowed form" if word == "anyOf" else "must match exactly one allowed form"
    if word == "falseSchema":
        return "is not allowed"
    return f"fails schema keyword '{word}'"
