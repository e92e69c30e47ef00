"""JSON-LD @context handling for NGSI-LD: loading, expanding terms to IRIs, compacting IRIs to terms.

NGSI-LD only needs a small part of JSON-LD: attribute names and entity types are *terms*
expanded with the request's @context (then the core context, which always applies last and
cannot be overridden), and compacted again with the @context of the reader. Doing that with a
term map, instead of a general JSON-LD processor, is what lets a batch of thousands of
entities be expanded in milliseconds. Compound values are kept as they are (not expanded).

The core context v1.8 is built in (``data/``) and never fetched. Other contexts come from:
* the broker itself (``/ngsi-ld/v1/jsonldContexts/{id}``, hosted in the database),
* the network, fetched with a timeout, cached in memory and in the database and refreshed
  after ``context_refresh_seconds``; while a refresh fails the cached copy keeps serving,
  so an air-gapped site keeps working once it has seen a context;
* the request itself (inline objects, arrays mixing URLs and objects).
A context that cannot be loaded is a 503 ``LdContextNotAvailable``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import httpx

from .errors import NgsiError, bad_request

CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
JSONLD_CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
_CORE_URL_RE = re.compile(r"^https?://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(-v\d+\.\d+(\.\d+)?)?\.jsonld$")
_HOSTED_RE = re.compile(r"/ngsi-ld/v1/jsonldContexts/([^/?#]+)$")
_MAX_DEPTH = 8
_GEN_DELIMS = (":", "/", "?", "#", "[", "]", "@")


@cache
def core_document() -> dict[str, Any]:
    """The built-in core context document (``{"@context": {...}}``)."""
    path = Path(__file__).parent / "data" / "ngsi-ld-core-context-v1.8.jsonld"
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def is_core_url(url: str) -> bool:
    return bool(_CORE_URL_RE.match(url))


def hosted_id(url: str) -> str | None:
    """The local id when ``url`` names a context hosted by an NGSI-LD broker."""
    m = _HOSTED_RE.search(url)
    return m.group(1) if m else None


#: Code points that are not visible or render as something else: an IRI (RFC 3987) carrying one
#: shows as a different id in logs and screens, so it identifies nothing (§4.5.1).
_INVISIBLE = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0x180E, 0x034F})


def _visible(ch: str) -> bool:
    cp = ord(ch)
    if cp < 0x80:
        return True
    if cp in _INVISIBLE or 0xFDD0 <= cp <= 0xFDEF or (cp & 0xFFFE) == 0xFFFE:
        return False
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF:  # variation selectors
        return False
    return unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")


def is_uri(value: str) -> bool:
    """Whether ``value`` looks like an absolute URI/IRI (scheme ':' rest), as NGSI-LD ids must be."""
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>\"{}|\\^`]+$", value):
        return False
    return value.isascii() or all(_visible(ch) for ch in value)


@dataclass(frozen=True)
class TermDef:
    iri: str
    type: str | None = None
    container: str | None = None


@dataclass
class ActiveContext:
    """Terms of a processed @context: ``expand`` and ``compact`` names and types."""

    terms: dict[str, TermDef]
    vocab: str | None
    source: Any  # the @context as the client gave it (URL, object or array); echoed in answers
    _expanded: dict[str, str] = field(default_factory=dict)
    _compacted: dict[str, str] = field(default_factory=dict)
    _inverse: dict[str, str] = field(default_factory=dict)
    _prefixes: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for term, td in sorted(self.terms.items(), key=lambda kv: (len(kv[0]), kv[0])):
            if td.iri.startswith("@") or ":" in term:
                continue
            self._inverse.setdefault(td.iri, term)
            if td.iri.endswith(_GEN_DELIMS):
                self._prefixes.append((term, td.iri))

    def expand(self, term: str) -> str:
        """The IRI of an attribute name or entity type."""
        found = self._expanded.get(term)
        if found is not None:
            return found
        td = self.terms.get(term)
        if td is not None and not td.iri.startswith("@"):
            iri = td.iri
        elif ":" in term:
            prefix, _, suffix = term.partition(":")
            ptd = self.terms.get(prefix)
            iri = ptd.iri + suffix if ptd is not None and not suffix.startswith("//") else term
        elif self.vocab:
            iri = self.vocab + term
        else:
            iri = term
        if len(self._expanded) < 100_000:
            self._expanded[term] = iri
        return iri

    def compact(self, iri: str) -> str:
        """The shortest name of ``iri`` in this context (a term, a vocab-relative name, a compact IRI)."""
        found = self._compacted.get(iri)
        if found is not None:
            return found
        result = self._inverse.get(iri)
        if result is None and self.vocab and iri.startswith(self.vocab) and len(iri) > len(self.vocab):
            suffix = iri[len(self.vocab) :]
            td = self.terms.get(suffix)
            if (td is None or td.iri == iri) and ":" not in suffix:
                result = suffix
        if result is None:
            best: str | None = None
            for term, prefix_iri in self._prefixes:
                if iri.startswith(prefix_iri) and len(iri) > len(prefix_iri):
                    candidate = f"{term}:{iri[len(prefix_iri) :]}"
                    if candidate not in self.terms and (best is None or len(candidate) < len(best)):
                        best = candidate
            result = best or iri
        if len(self._compacted) < 100_000:
            self._compacted[iri] = result
        return result

    def term_type(self, iri: str) -> str | None:
        """The ``@type`` of the term that names ``iri`` (``@vocab`` marks values to expand)."""
        term = self._inverse.get(iri)
        return self.terms[term].type if term is not None else None


class ContextSource(Protocol):
    """Where contexts that are not built in come from (the database of the broker)."""

    def hosted(self, local_id: str) -> Any | None:
        """The ``@context`` value of a context hosted here, or None."""

    def cached(self, url: str) -> tuple[Any, float] | None:
        """A cached remote context and when it was fetched (epoch seconds), or None."""

    def save(self, url: str, value: Any) -> None:
        """Keep a freshly fetched remote context."""


def _resolve(value: str, local: dict[str, Any], active: dict[str, TermDef], vocab: str | None, depth: int = 0) -> str:
    if value.startswith("@") or depth > 16:
        return value
    if ":" in value:
        prefix, _, suffix = value.partition(":")
        if suffix.startswith("//"):
            return value
        if prefix in local:
            raw = local[prefix]
            raw_iri = raw.get("@id", prefix) if isinstance(raw, dict) else raw
            if isinstance(raw_iri, str):
                return _resolve(raw_iri, local, active, vocab, depth + 1) + suffix
        if prefix in active:
            return active[prefix].iri + suffix
        return value
    if value in local and local[value] != value:
        raw = local[value]
        raw_iri = raw.get("@id") if isinstance(raw, dict) else raw
        if isinstance(raw_iri, str):
            return _resolve(raw_iri, local, active, vocab, depth + 1)
    if value in active:
        return active[value].iri
    return (vocab or "") + value


class ContextLoader:
    """Loads and processes @contexts; thread-safe; caches processed contexts."""

    def __init__(
        self,
        source_factory: Callable[[], ContextSource] | None = None,
        *,
        timeout: float = 5.0,
        refresh_seconds: float = 3600.0,
        max_bytes: int = 2_000_000,
        cache_size: int = 512,
    ) -> None:
        self.source_factory = source_factory
        self.timeout = timeout
        self.refresh_seconds = refresh_seconds
        self.max_bytes = max_bytes
        self.cache_size = cache_size
        self._docs: dict[str, tuple[Any, float]] = {}  # url -> (@context value, fetched at)
        self._active: OrderedDict[str, tuple[ActiveContext, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._core = self._process([], ())
        self.hits: dict[str, int] = {}

    @property
    def core(self) -> ActiveContext:
        """The core context alone (what applies when a request gives none)."""
        return self._core

    def clear(self) -> None:
        """Forget processed contexts (after a hosted context changed or a cached one was reloaded)."""
        with self._lock:
            self._active.clear()
            self._docs.clear()

    def active(self, spec: Any) -> ActiveContext:
        """The processed context of ``spec`` (None, a URL, an object or an array), core applied last."""
        if spec is None or (isinstance(spec, str) and is_core_url(spec)):
            return self._core
        for item in spec if isinstance(spec, list) else (spec,):
            # a request naming a @context is a use of it (numberOfHits); the built-in core has no count
            if isinstance(item, str) and not is_core_url(item):
                self.count_hit(item)
        key = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        now = time.monotonic()
        with self._lock:
            entry = self._active.get(key)
            if entry is not None and now - entry[1] < self.refresh_seconds:
                self._active.move_to_end(key)
                return entry[0]
        items = spec if isinstance(spec, list) else [spec]
        ctx = self._process(items, (), spec=spec)
        with self._lock:
            self._active[key] = (ctx, now)
            while len(self._active) > self.cache_size:
                self._active.popitem(last=False)
        return ctx

    # -- processing -------------------------------------------------------
    def _process(self, items: list[Any], seen: tuple[str, ...], spec: Any = None) -> ActiveContext:
        terms: dict[str, TermDef] = {}
        vocab: list[str | None] = [None]
        for item in items:
            self._apply(item, terms, vocab, seen, 0)
        user_vocab = vocab[0]
        self._apply(core_document()["@context"], terms, vocab, seen, 0)
        # The core context's @vocab applies unless the user gave one of their own.
        return ActiveContext(terms, user_vocab or vocab[0], spec if spec is not None else CORE_CONTEXT_URL)

    def _apply(
        self, item: Any, terms: dict[str, TermDef], vocab: list[str | None], seen: tuple[str, ...], depth: int
    ) -> None:
        if depth > _MAX_DEPTH:
            raise bad_request("@context nested too deeply.")
        if item is None:
            terms.clear()
            return
        if isinstance(item, list):
            for sub in item:
                self._apply(sub, terms, vocab, seen, depth + 1)
            return
        if isinstance(item, str):
            if is_core_url(item):
                return  # the core context applies last anyway
            if item in seen:
                raise bad_request(f"@context {item} includes itself.")
            if seen:  # one a @context includes (a request's own were counted by ``active``)
                self.count_hit(item)
            self._apply(self.load_url(item), terms, vocab, (*seen, item), depth + 1)
            return
        if not isinstance(item, dict):
            raise bad_request("An @context must be a URL, an object or an array of those.")
        if "@import" in item and isinstance(item["@import"], str):
            self.count_hit(item["@import"])
            self._apply(self.load_url(item["@import"]), terms, vocab, (*seen, item["@import"]), depth + 1)
        if "@vocab" in item:
            v = item["@vocab"]
            if v is None:
                vocab[0] = None
            elif isinstance(v, str):
                vocab[0] = _resolve(v, item, terms, vocab[0]) if ":" in v else (vocab[0] or "") + v
            else:
                raise bad_request("@vocab must be a string.")
        for term, raw in item.items():
            if term.startswith("@"):
                continue
            if raw is None:
                terms.pop(term, None)
                continue
            if isinstance(raw, str):
                iri_raw: Any = raw
                td_type = td_container = None
            elif isinstance(raw, dict):
                if "@context" in raw:
                    raise bad_request(
                        f"The term {term!r} has a scoped @context, which NGSI-LD does not allow (§5.5.7)."
                    )
                iri_raw = raw.get("@id", term)
                td_type = raw.get("@type") if isinstance(raw.get("@type"), str) else None
                td_container = raw.get("@container") if isinstance(raw.get("@container"), str) else None
                if iri_raw is None:
                    terms.pop(term, None)
                    continue
            else:
                raise bad_request(f"Invalid definition of the term {term!r} in the @context.")
            if not isinstance(iri_raw, str):
                raise bad_request(f"Invalid @id of the term {term!r} in the @context.")
            iri = (
                _resolve(iri_raw, item, terms, vocab[0])
                if iri_raw != term or ":" in term
                else (_resolve(term, {}, terms, vocab[0]))
            )
            terms[term] = TermDef(iri, td_type, td_container)

    def count_hit(self, url: str) -> None:
        """One more use of the @context at ``url`` (``numberOfHits``, §5.13.3; this process's)."""
        with self._lock:
            self.hits[url] = self.hits.get(url, 0) + 1

    # -- loading ----------------------------------------------------------
    def load_url(self, url: str) -> Any:
        """The ``@context`` value of the document at ``url``."""
        if is_core_url(url):
            return core_document()["@context"]
        if not is_uri(url) and not (url.startswith("/") and hosted_id(url) is not None):
            # a path naming a context this broker hosts (the Location of its Add @context) is a
            # relative reference to it, resolved against the request's own URL (JSON-LD 1.1 §4.1.2)
            raise bad_request(f"The @context {url!r} is not a URL.")
        now = time.time()
        with self._lock:
            hit = self._docs.get(url)
        if hit is not None and now - hit[1] < self.refresh_seconds:
            return hit[0]
        source = self.source_factory() if self.source_factory else None
        local = hosted_id(url)
        if local is not None and source is not None:
            value = source.hosted(local)
            if value is not None:
                with self._lock:
                    self._docs[url] = (value, now)
                return value
        stale: tuple[Any, float] | None = hit
        if source is not None and stale is None:
            stale = source.cached(url)
            if stale is not None and now - stale[1] < self.refresh_seconds:
                with self._lock:
                    self._docs[url] = stale
                return stale[0]
        if not url.startswith(("http://", "https://")):
            if stale is not None:
                return stale[0]
            raise NgsiError("LdContextNotAvailable", f"The @context {url} cannot be dereferenced.")
        try:
            value = self.fetch(url)
        except NgsiError:
            if stale is not None:
                return stale[0]
            raise
        if source is not None:
            source.save(url, value)
        with self._lock:
            self._docs[url] = (value, now)
        return value

    def fetch(self, url: str) -> Any:
        """GET a remote context (timeout, size limit); its ``@context`` member."""
        try:
            headers = {"Accept": "application/ld+json, application/json"}
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=True) as client,
                client.stream("GET", url, headers=headers) as r,
            ):
                if r.status_code != 200:
                    raise NgsiError("LdContextNotAvailable", f"The @context {url} answered HTTP {r.status_code}.")
                chunks: list[bytes] = []
                size = 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise NgsiError("LdContextNotAvailable", f"The @context {url} is too large.")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise NgsiError("LdContextNotAvailable", f"The @context {url} cannot be loaded: {exc}.") from exc
        # §5.5.6: a remote @context that was retrieved but is not a valid one is BadRequestData.
        try:
            doc = json.loads(b"".join(chunks))
        except ValueError as exc:
            raise bad_request(f"The @context {url} is not JSON.") from exc
        if not isinstance(doc, dict) or "@context" not in doc:
            raise bad_request(f"The document at {url} has no @context member.")
        return doc["@context"]


def link_header(url: str) -> str:
    """A ``Link`` header naming the JSON-LD context of a JSON answer."""
    return f'<{url}>; rel="{JSONLD_CONTEXT_REL}"; type="application/ld+json"'


def context_links(values: list[str]) -> list[str]:
    """The URLs of every JSON-LD context ``Link`` in the given header values."""
    found: list[str] = []
    for header in values:
        for part in _split_links(header):
            m = re.match(r"\s*<([^>]*)>(.*)$", part, re.S)
            if not m:
                continue
            params = m.group(2)
            rel = re.search(r'rel\s*=\s*"?([^";]+)"?', params)
            if rel and JSONLD_CONTEXT_REL in rel.group(1).split():
                found.append(m.group(1).strip())
    return found


def _split_links(header: str) -> list[str]:
    parts: list[str] = []
    depth_angle = False
    quoted = False
    current: list[str] = []
    for ch in header:
        if ch == "<" and not quoted:
            depth_angle = True
        elif ch == ">" and not quoted:
            depth_angle = False
        elif ch == '"' and not depth_angle:
            quoted = not quoted
        if ch == "," and not depth_angle and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if current:
        parts.append("".join(current))
    return parts
