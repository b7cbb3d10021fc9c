"""SQLAlchemy Core conditions as ClickHouse SQL with server-side parameters.

A source's query layer builds its filters once, as SQLAlchemy conditions on its
tables (what the SQL store runs); its ClickHouse reads translate the same conditions
here instead of building them a second time, so a filter cannot differ between the two
stores. Only what filters use is translated: ``and_``/``or_``, comparisons, ``IN``,
``IS [NOT]`` and ``LIKE`` of a column against values; anything else raises TypeError
(a programming error, found by the parity tests). Values always travel as parameters.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import (
    BinaryExpression,
    BindParameter,
    BooleanClauseList,
    ColumnClause,
    Grouping,
    Null,
    True_,
)

_COMPARE = {
    operator.eq: "=",
    operator.ne: "!=",
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
    operators.like_op: "LIKE",
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Int64"
    if isinstance(value, float):
        return "Float64"
    if isinstance(value, str):
        return "String"
    raise TypeError(f"no ClickHouse type for a parameter of {type(value).__name__}")


class Translation:
    """Translates conditions, collecting their parameters (``p0``, ``p1``, …)."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        if isinstance(value, list | tuple):
            inner = _kind(value[0]) if value else "String"
            self.params[name] = list(value)
            return f"{{{name}:Array({inner})}}"
        return f"{{{name}:{_kind(value)}}}"

    def condition(self, clause: Any) -> str:
        if isinstance(clause, Grouping):
            return self.condition(clause.element)
        if isinstance(clause, BooleanClauseList):
            joiner = " AND " if clause.operator is operators.and_ else " OR "
            parts = [self.condition(c) for c in clause.clauses]
            return "(" + joiner.join(parts) + ")" if parts else "true"
        if isinstance(clause, True_):
            return "true"
        if isinstance(clause, BinaryExpression):
            return self._binary(clause)
        raise TypeError(f"cannot translate {type(clause).__name__} to ClickHouse")

    def _binary(self, clause: BinaryExpression[Any]) -> str:
        left, right, op = clause.left, clause.right, clause.operator
        if not isinstance(left, ColumnClause):
            raise TypeError(f"cannot translate a condition on {type(left).__name__}")
        column = left.name
        if op in (operators.is_, operators.is_not):
            negate = op is operators.is_not
            if isinstance(right, Null):
                return f"{column} IS {'NOT ' if negate else ''}NULL"
            value = right.value if isinstance(right, BindParameter) else _constant(right)
            return f"{column} {'!=' if negate else '='} {self.param(value)}"
        if op in (operators.in_op, operators.not_in_op):
            values = right.value if isinstance(right, BindParameter) else None
            if values is None:
                raise TypeError("IN needs a list of values")
            word = "NOT IN" if op is operators.not_in_op else "IN"
            return f"{column} {word} {self.param(list(values))}"
        sql = _COMPARE.get(op)
        if sql is None or not isinstance(right, BindParameter):
            raise TypeError(f"cannot translate operator {op!r} to ClickHouse")
        return f"{column} {sql} {self.param(right.value)}"


def _constant(clause: Any) -> Any:
    name = type(clause).__name__
    if name == "True_":
        return True
    if name == "False_":
        return False
    raise TypeError(f"cannot translate IS {name}")


def translate(conditions: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``(" WHERE …", params)`` for conditions joined by AND (``("", {})`` for none)."""
    t = Translation()
    parts = [t.condition(c) for c in conditions]
    return ((" WHERE " + " AND ".join(parts)) if parts else ""), t.params
