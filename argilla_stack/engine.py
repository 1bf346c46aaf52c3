"""Argilla's `SearchEngine` interface on the embedded SQLite store (`argilla_stack.store`).

Registered as ``ARGILLA_SEARCH_ENGINE=embedded`` when this module is imported; the stack's
launcher imports it in both the server and the rq worker before Argilla starts, so the stock,
unmodified server uses it. Semantics follow Argilla's Elasticsearch engine
(`argilla_server.search_engine.commons`), with two deliberate differences:

* per-user progress counts only that user's responses (Elasticsearch's aggregation over
  ``include_in_root`` responses also counts other users' statuses on the same records);
* similarity is exact (no approximate k-NN): cosine over all vectors, score ``(1 + cos) / 2``
  as Elasticsearch reports it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from argilla_server.enums import MetadataPropertyType, SimilarityOrder, SortOrder
from argilla_server.models import (
    Dataset,
    MetadataProperty,
    Record,
    Response,
    Suggestion,
    User,
    VectorSettings,
)
from argilla_server.search_engine.base import (
    AndFilter,
    Filter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)

from argilla_stack.store import Document, ResponseDoc, SearchStore

ENGINE_NAME = "embedded"
STORE_ENV = "LABELTRIAGE_SEARCH_STORE"
_RECORD_COLUMNS = {"id": "r.record_id", "external_id": "r.external_id", "status": "r.status"}
_RECORD_TIMES = {"inserted_at": "r.inserted_at", "updated_at": "r.updated_at"}
_stores: dict[str, SearchStore] = {}


def store_path() -> Path:
    """Where the store lives: ``$LABELTRIAGE_SEARCH_STORE``, else ``$ARGILLA_HOME_PATH/search.sqlite3``."""
    configured = os.environ.get(STORE_ENV)
    if configured:
        return Path(configured)
    home = os.environ.get("ARGILLA_HOME_PATH") or str(Path.home() / ".argilla")
    return Path(home) / "search.sqlite3"


def get_store(path: Path | None = None) -> SearchStore:
    key = str(path or store_path())
    if key not in _stores:
        _stores[key] = SearchStore(key)
    return _stores[key]


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def _timestamp(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


def _field_text(field: Any, value: Any) -> str | None:
    if value is None or field.is_image:
        return None
    if field.is_chat and isinstance(value, list):
        return "\n".join(str(message.get("content", "")) for message in value if isinstance(message, dict))
    return str(value)


def record_to_document(dataset: Dataset, record: Record) -> Document:
    """Map an Argilla record (responses, suggestions with their question, vectors loaded) to a Document."""
    texts = {}
    for field in dataset.fields:
        text = _field_text(field, (record.fields or {}).get(field.name))
        if text:
            texts[field.name] = text
    facts: list[tuple[str, Any]] = []
    metadata = record.metadata_ or {}
    for metadata_property in dataset.metadata_properties:
        value = metadata.get(metadata_property.name)
        if value is not None:
            facts.append((f"metadata.{metadata_property.name}", value))
    for suggestion in record.suggestions:
        facts.extend(_suggestion_facts(suggestion))
    return Document(
        record_id=str(record.id),
        external_id=record.external_id,
        status=str(_enum_value(record.status)),
        inserted_at=_timestamp(record.inserted_at),
        updated_at=_timestamp(record.updated_at),
        texts=texts,
        facts=facts,
        responses=[_response_doc(response) for response in record.responses],
        vectors={str(vector.vector_settings_id): vector.value for vector in record.vectors},
    )


def _suggestion_facts(suggestion: Suggestion) -> list[tuple[str, Any]]:
    prefix = f"suggestions.{suggestion.question.name}"
    facts: list[tuple[str, Any]] = [(f"{prefix}.value", suggestion.value)]
    if suggestion.score is not None:
        facts.append((f"{prefix}.score", suggestion.score))
    if suggestion.agent is not None:
        facts.append((f"{prefix}.agent", suggestion.agent))
    if suggestion.type is not None:
        facts.append((f"{prefix}.type", str(_enum_value(suggestion.type))))
    return facts


def _response_doc(response: Response) -> ResponseDoc:
    values = {question: (value or {}).get("value") for question, value in (response.values or {}).items()}
    return ResponseDoc(
        response_id=str(response.id),
        user_id=str(response.user_id),
        status=str(_enum_value(response.status)),
        values=values,
    )


_QUERY_TOKEN = re.compile(r'(-?)"([^"]*)"|(\S+)')
_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> tuple[list[str], list[str]]:
    """Translate Elasticsearch ``simple_query_string`` (AND by default) into FTS5 expressions.

    Returns ``(positive, negative)`` expressions: a record matches when it matches every positive
    one and no negative one. Supported: bare words, ``"phrases"``, ``prefix*``, ``-exclusion``,
    ``a | b``; other operators are read as plain words.
    """
    positive: list[str] = []
    negative: list[str] = []
    pending_or: list[str] = []
    tokens = list(_QUERY_TOKEN.finditer(text))
    for index, match in enumerate(tokens):
        negated, phrase, word = match.group(1), match.group(2), match.group(3)
        if word == "|":
            continue
        if phrase is not None:
            words = _WORD.findall(phrase)
            expression = '"' + " ".join(words) + '"' if words else None
        else:
            negated = "-" if word.startswith("-") and len(word) > 1 else ""
            raw = word.lstrip("+-")
            words = _WORD.findall(raw)
            if not words:
                continue
            expression = '"' + " ".join(words) + '"'
            if raw.endswith("*"):
                expression += "*"
        if expression is None:
            continue
        if negated:
            negative.append(expression)
            continue
        next_is_or = index + 1 < len(tokens) and tokens[index + 1].group(3) == "|"
        pending_or.append(expression)
        if not next_is_or:
            positive.append(pending_or[0] if len(pending_or) == 1 else "(" + " OR ".join(pending_or) + ")")
            pending_or = []
    if pending_or:
        positive.append("(" + " OR ".join(pending_or) + ")")
    return positive, negative


def _user_rank(user_id: str, record_id: str) -> float:
    digest = hashlib.blake2b(f"{user_id}:{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class _Query:
    """Collects the SQL condition, joins and parameters of one search."""

    def __init__(self, dataset_id: str):
        self.conditions = ["r.dataset_id = ?"]
        self.params: list[Any] = [dataset_id]
        self.join = ""
        self.join_params: list[Any] = []

    def add_text(self, dataset: Dataset, query: TextQuery | str | None) -> None:
        if query is None:
            return
        text_query: Any = TextQuery(q=query) if isinstance(query, str) else query
        field = text_query.field or "*"
        if text_query.field and dataset.field_by_name(text_query.field) is None:
            raise ValueError(f"Field {text_query.field} not found in dataset {dataset.id}")
        positive, negative = fts_query(text_query.q)
        if positive:
            # Relevance is BM25, as in Elasticsearch; FTS5's bm25() is negative (lower is better).
            self.join = (
                " JOIN (SELECT rid, -bm25(fts) AS score FROM fts WHERE fts MATCH ? AND field = ?) t ON t.rid = r.rid"
            )
            self.join_params = [" AND ".join(positive), field]
        for expression in negative:
            self.conditions.append("r.rid NOT IN (SELECT rid FROM fts WHERE fts MATCH ? AND field = ?)")
            self.params += [expression, field]

    def add_filter(self, filter: Filter | None) -> None:
        if filter is not None:
            sql, params = _filter_sql(filter)
            self.conditions.append(sql)
            self.params += params

    @property
    def scored(self) -> bool:
        return bool(self.join)

    def sql(self, columns: str, lead: str = "", extra: tuple[str, list[Any]] | None = None) -> tuple[str, list[Any]]:
        """``SELECT columns FROM {lead}records r ... WHERE ...`` and its parameters.

        ``lead`` puts a table before ``records`` (as the outer loop); ``extra`` adds a condition.
        """
        conditions, params = list(self.conditions), list(self.params)
        if extra is not None:
            conditions.append(extra[0])
            params += extra[1]
        where = " AND ".join(conditions)
        return f"SELECT {columns} FROM {lead}records r{self.join} WHERE {where}", [*self.join_params, *params]


def _values_sql(filter: TermsFilter | RangeFilter, term: str, num: str) -> tuple[str, list[Any]]:
    if isinstance(filter, TermsFilter):
        values = [str(_enum_value(value)) for value in filter.values]
        return f"{term} IN ({','.join('?' * len(values))})", values
    if isinstance(filter, RangeFilter):
        parts, params = [], []
        if filter.ge is not None:
            parts.append(f"{num} >= ?")
            params.append(filter.ge)
        if filter.le is not None:
            parts.append(f"{num} <= ?")
            params.append(filter.le)
        return (" AND ".join(parts) or f"{num} IS NOT NULL"), params
    raise ValueError(f"Cannot process request for filter {filter}")


def _fact_path(scope: MetadataFilterScope | SuggestionFilterScope) -> str:
    if isinstance(scope, MetadataFilterScope):
        return f"metadata.{scope.metadata_property}"
    return f"suggestions.{scope.question}.{scope.property}"


def _filter_sql(filter: Filter) -> tuple[str, list[Any]]:
    if isinstance(filter, AndFilter):
        parts = [_filter_sql(inner) for inner in filter.filters]
        if not parts:
            return "1", []
        return "(" + " AND ".join(sql for sql, _ in parts) + ")", [p for _, params in parts for p in params]
    scope = filter.scope
    if isinstance(scope, MetadataFilterScope | SuggestionFilterScope):
        condition, params = _values_sql(filter, "term", "num")
        return f"r.rid IN (SELECT rid FROM facts WHERE path = ? AND {condition})", [
            _fact_path(scope),
            *params,
        ]
    if isinstance(scope, RecordFilterScope):
        if scope.property in _RECORD_COLUMNS:
            column = _RECORD_COLUMNS[scope.property]
            return _values_sql(filter, column, column)
        if scope.property in _RECORD_TIMES:
            column = _RECORD_TIMES[scope.property]
            return _values_sql(filter, column, column)
        raise ValueError(f"Cannot process request for search scope {scope}")
    if isinstance(scope, ResponseFilterScope):
        return _response_filter_sql(filter, scope)
    raise ValueError(f"Cannot process request for search scope {scope}")


def _response_filter_sql(filter: TermsFilter | RangeFilter, scope: ResponseFilterScope) -> tuple[str, list]:
    user_sql, user_params = ("", [])
    if scope.user is not None:
        user_sql, user_params = " AND rs.user_id = ?", [str(scope.user.id)]
    if scope.question:
        condition, params = _values_sql(filter, "rv.term", "rv.num")
        sql = (
            "r.rid IN (SELECT rv.rid FROM response_values rv JOIN responses rs ON rs.response_id = rv.response_id"
            f" WHERE rv.question = ? AND {condition}{user_sql})"
        )
        return sql, [scope.question, *params, *user_params]
    if scope.property == "status" and isinstance(filter, TermsFilter):
        statuses = [str(_enum_value(value)) for value in filter.values]
        parts, params = [], []
        if "pending" in statuses:
            # Pending = no response at all (for this user, when the search is per user).
            parts.append(f"r.rid NOT IN (SELECT rs.rid FROM responses rs WHERE 1{user_sql})")
            params += user_params
            statuses = [status for status in statuses if status != "pending"]
        if statuses:
            marks = ",".join("?" * len(statuses))
            parts.append(f"r.rid IN (SELECT rs.rid FROM responses rs WHERE rs.status IN ({marks}){user_sql})")
            params += [*statuses, *user_params]
        return "(" + " OR ".join(parts) + ")" if parts else "1", params
    raise ValueError(f"Cannot process filter scope {scope}")


def _order_sql(order: Order) -> tuple[str, list[Any]]:
    scope = order.scope
    descending = _enum_value(order.order) == SortOrder.desc.value
    # Elasticsearch sorts a multi-valued field by its min ascending and its max descending.
    aggregate = "MAX" if descending else "MIN"
    if isinstance(scope, MetadataFilterScope | SuggestionFilterScope):
        expression = f"(SELECT {aggregate}(COALESCE(num, term)) FROM facts WHERE facts.rid = r.rid AND path = ?)"
        params = [_fact_path(scope)]
    elif isinstance(scope, RecordFilterScope):
        column = _RECORD_COLUMNS.get(scope.property) or _RECORD_TIMES.get(scope.property)
        if column is None:
            raise ValueError(f"Cannot sort by record property {scope.property}")
        expression, params = column, []
    elif isinstance(scope, ResponseFilterScope):
        user_sql, params = ("", [])
        if scope.user is not None:
            user_sql, params = " AND rs.user_id = ?", [str(scope.user.id)]
        expression = (
            "(SELECT AVG(rv.num) FROM response_values rv JOIN responses rs ON rs.response_id = rv.response_id"
            f" WHERE rv.rid = r.rid AND rv.question = ?{user_sql})"
        )
        params = [scope.question or scope.property, *params]
    else:
        raise ValueError(f"Cannot process request for search scope {scope}")
    direction = "DESC" if descending else "ASC"
    # Missing values last in both directions, as Elasticsearch does.
    return f"({expression}) IS NULL, {expression} {direction}", params + params


@SearchEngine.register(engine_name=ENGINE_NAME)
class EmbeddedSearchEngine(SearchEngine):
    """Argilla search engine on a local SQLite store shared by the server and its worker."""

    def __init__(self, store: SearchStore):
        self.store = store

    @classmethod
    async def new_instance(cls) -> EmbeddedSearchEngine:
        return cls(get_store())

    async def close(self) -> None:
        # Connections are kept per process and thread and reused across requests.
        return None

    async def ping(self) -> bool:
        try:
            self.store.query("SELECT count(*) FROM indexes")
        except Exception:
            return False
        return True

    async def info(self) -> dict:
        return {
            "engine": ENGINE_NAME,
            "store": str(self.store.path),
            "schema": self.store.get_meta("schema_version"),
        }

    # -- index management ------------------------------------------------------------------------
    async def create_index(self, dataset: Dataset) -> None:
        self.store.create_index(str(dataset.id))

    async def delete_index(self, dataset: Dataset) -> None:
        self.store.delete_index(str(dataset.id))

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty) -> None:
        # Like an Elasticsearch mapping update: records indexed from now on carry the property.
        return None

    async def configure_index_vectors(self, vector_settings: VectorSettings) -> None:
        return None

    # -- writes ----------------------------------------------------------------------------------
    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        documents = [record_to_document(dataset, record) for record in records]
        if documents:
            self.store.index_documents(str(dataset.id), documents)

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        status = update.get("status")
        facts = [(f"metadata.{key}", value) for key, value in (update.get("metadata") or {}).items()]
        self.store.update_record(str(record.id), status=str(_enum_value(status)) if status else None, facts=facts)

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        self.store.delete_documents([str(record.id) for record in records])

    async def update_record_response(self, response: Response) -> None:
        self.store.upsert_response(str(response.record_id), _response_doc(response))

    async def delete_record_response(self, response: Response) -> None:
        self.store.delete_response(str(response.id))

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        prefix = f"suggestions.{suggestion.question.name}"
        paths = {f"{prefix}.{name}" for name in ("value", "score", "agent", "type")}
        self.store.replace_facts(str(suggestion.record_id), paths, _suggestion_facts(suggestion))

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        prefix = f"suggestions.{suggestion.question.name}"
        paths = {f"{prefix}.{name}" for name in ("value", "score", "agent", "type")}
        self.store.replace_facts(str(suggestion.record_id), paths, [])

    # -- reads -----------------------------------------------------------------------------------
    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        rows = self.store.query(
            "SELECT status, count(*) FROM records WHERE dataset_id = ? GROUP BY status", (str(dataset.id),)
        )
        return {"total": sum(count for _, count in rows), **dict(rows)}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        rows = self.store.query(
            "SELECT rs.status, count(*) FROM responses rs JOIN records r ON r.rid = rs.rid "
            "WHERE r.dataset_id = ? AND rs.user_id = ? GROUP BY rs.status",
            (str(dataset.id), str(user.id)),
        )
        return {"total": sum(count for _, count in rows), **dict(rows)}

    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        sort: list[Order] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: str | None = None,
    ) -> SearchResponses:
        built = _Query(str(dataset.id))
        built.add_text(dataset, query)
        built.add_filter(filter)
        total = self.store.query(*built.sql("count(*)"))[0][0]
        select, params = built.sql("r.record_id, " + ("t.score" if built.scored else "1.0") + " AS score")
        if sort and len(sort) == 1 and isinstance(sort[0].scope, MetadataFilterScope | SuggestionFilterScope):
            rows = self._search_sorted_by_fact(built, sort[0], offset, limit)
        elif sort:
            orders = [_order_sql(order) for order in sort]
            order_by = ", ".join(sql for sql, _ in orders) + ", r.rid"
            params += [p for _, order_params in orders for p in order_params]
            rows = self.store.query(f"{select} ORDER BY {order_by} LIMIT ? OFFSET ?", [*params, limit, offset])
        elif user_id is not None:
            # A stable, different order per user (Elasticsearch: random_score seeded by the user id).
            rows = self.store.query(select, params)
            keyed = sorted(rows, key=lambda row: -(row[1] or 1.0) * _user_rank(str(user_id), row[0]))
            rows = keyed[offset : offset + limit]
        else:
            order_by = "score DESC, r.rid" if built.scored else "r.rid"
            rows = self.store.query(f"{select} ORDER BY {order_by} LIMIT ? OFFSET ?", [*params, limit, offset])
        items = [SearchResponseItem(record_id=record_id, score=score) for record_id, score in rows]
        return SearchResponses(items=items, total=total)

    def _search_sorted_by_fact(self, built: _Query, order: Order, offset: int, limit: int) -> list[tuple]:
        """One sort on a metadata or suggestion value: walk its index in order and stop at the page.

        The index ``facts_num``/``facts_term`` (path, value, rid) is the outer loop, so a page costs
        about ``(offset + limit) / selectivity`` index steps instead of sorting every match. A
        multi-valued field meets its min first ascending and its max first descending, which is
        Elasticsearch's sort mode; later occurrences are skipped. Records without the field follow.
        """
        path = _fact_path(order.scope)
        numeric = self.store.query("SELECT num IS NOT NULL FROM facts WHERE path = ? LIMIT 1", (path,))
        value = "num" if numeric and numeric[0][0] else "term"
        column = f"s.{value}"
        direction = "DESC" if _enum_value(order.order) == SortOrder.desc.value else "ASC"
        score = "t.score" if built.scored else "1.0"
        select, params = built.sql(
            f"r.record_id, {score}", lead="facts s CROSS JOIN ", extra=("s.rid = r.rid AND s.path = ?", [path])
        )
        wanted = offset + limit
        seen: set[str] = set()
        rows: list[tuple] = []
        cursor = self.store.db.execute(
            f"{select} AND {column} IS NOT NULL ORDER BY {column} {direction}, s.rid {direction}", params
        )
        for row in cursor:
            if row[0] not in seen:
                seen.add(row[0])
                rows.append(row)
                if len(rows) >= wanted:
                    break
        cursor.close()
        if len(rows) < wanted:
            missing, params = built.sql(
                f"r.record_id, {score}",
                extra=(f"r.rid NOT IN (SELECT rid FROM facts WHERE path = ? AND {value} IS NOT NULL)", [path]),
            )
            rows += self.store.query(f"{missing} ORDER BY r.rid LIMIT ?", [*params, wanted - len(rows)])
        return rows[offset:wanted]

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: list[float] | None = None,
        record: Record | None = None,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: float | None = None,
    ) -> SearchResponses:
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        excluded = None
        if not value:
            assert record is not None  # one of value and record is given (checked above)
            excluded = str(record.id)
            value = record.vector_value_by_vector_settings(vector_settings)
        if not value:
            raise ValueError("Cannot find a vector value to apply with provided info")
        rids, matrix = self.store.vector_matrix(str(dataset.id), str(vector_settings.id))
        if len(rids) == 0:
            return SearchResponses(items=[], total=0)
        target = np.asarray(value, dtype=np.float32)
        if _enum_value(order) == SimilarityOrder.least_similar.value:
            target = -target
        norm = float(np.linalg.norm(target))
        scores = (1.0 + matrix @ (target / (norm or 1.0))) / 2.0
        keep = np.ones(len(rids), dtype=bool)
        if query is not None or filter is not None or excluded is not None:
            built = _Query(str(dataset.id))
            built.add_text(dataset, query)
            built.add_filter(filter)
            if excluded is not None:
                built.conditions.append("r.record_id != ?")
                built.params.append(excluded)
            allowed = np.fromiter((row[0] for row in self.store.query(*built.sql("r.rid"))), dtype=np.int64)
            keep = np.isin(rids, allowed)
        if threshold is not None:
            keep &= scores >= threshold
        candidates = np.flatnonzero(keep)
        if len(candidates) > max_results:
            top = np.argpartition(-scores[candidates], max_results - 1)[:max_results]
            candidates = candidates[top]
        candidates = candidates[np.lexsort((rids[candidates], -scores[candidates]))]
        lookup = dict(
            self.store.query(
                f"SELECT rid, record_id FROM records WHERE rid IN ({','.join('?' * len(candidates))})",
                [int(rid) for rid in rids[candidates]],
            )
        )
        items = [
            SearchResponseItem(record_id=lookup[int(rids[index])], score=float(scores[index])) for index in candidates
        ]
        return SearchResponses(items=items, total=len(items))

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        path = f"metadata.{metadata_property.name}"
        dataset_id = str(metadata_property.dataset_id)
        join = "FROM facts f JOIN records r ON r.rid = f.rid WHERE r.dataset_id = ? AND f.path = ?"
        if metadata_property.type == MetadataPropertyType.terms:
            rows = self.store.query(
                f"SELECT f.term, count(*) AS n {join} GROUP BY f.term ORDER BY n DESC, f.term",
                (dataset_id, path),
            )
            return TermsMetrics(
                total=sum(count for _, count in rows),
                values=[TermsMetrics.TermCount(term=term, count=count) for term, count in rows],
            )
        low, high = self.store.query(f"SELECT MIN(f.num), MAX(f.num) {join}", (dataset_id, path))[0]
        if metadata_property.type == MetadataPropertyType.integer:
            return IntegerMetadataMetrics(
                min=int(low) if low is not None else None, max=int(high) if high is not None else None
            )
        return FloatMetadataMetrics(min=low, max=high)
