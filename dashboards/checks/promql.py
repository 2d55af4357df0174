"""PromQL, as far as these checks need it: a tokenizer, the vector selectors
of an expression (matchers, range, enclosing function), template variables,
and every dashboard query as a recording rule for `promtool check rules`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .sources import queries, variable_expr


# How variables are replaced for `promtool check rules`.
BUILTIN_VALUES = {
    "__rate_interval": "5m", "__interval": "1m", "__interval_ms": "60000", "__range": "1h",
    "__range_s": "3600", "__range_ms": "3600000", "__from": "0", "__to": "3600000",
}
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}


TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\])
  | (?P<num>(?:0x[0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)
  | (?P<id>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@])
    """,
    re.X,
)


class PromQLError(Exception):
    pass


def tokenize(expr):
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise PromQLError(f"cannot read {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def unquote(s):
    if s[0] == "`":
        return s[1:-1]
    return re.sub(r"\\(.)", r"\1", s[1:-1])


@dataclass
class Selector:
    name: str
    matchers: list = field(default_factory=list)  # (label, op, value)
    range: str | None = None
    func: str | None = None  # the innermost enclosing call

    def values(self, label):
        return [(op, v) for (lbl, op, v) in self.matchers if lbl == label]


def analyze(expr):
    """The vector selectors of `expr`, with their matchers, range and the
    function they are an argument of."""
    toks = tokenize(expr)
    n = len(toks)
    selectors, stack = [], []
    pending = None
    i = 0

    def val(j):
        return toks[j][1] if j < n else None

    def skip_group(j, open_, close):
        depth = 0
        while j < n:
            if toks[j][1] == open_:
                depth += 1
            elif toks[j][1] == close:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        raise PromQLError(f"unbalanced {open_!r}")

    def matchers(j):
        """toks[j] is '{'; returns (matchers, index after '}')."""
        out = []
        j += 1
        while j < n and toks[j][1] != "}":
            if toks[j][1] == ",":
                j += 1
                continue
            if j + 2 >= n:
                raise PromQLError("unterminated label matchers")
            (lk, label), (_, op), (vk, value) = toks[j], toks[j + 1], toks[j + 2]
            if lk not in ("id", "str") or op not in ("=", "!=", "=~", "!~") or vk != "str":
                raise PromQLError(f"bad label matcher near {label!r} {op!r} {value!r}")
            out.append((unquote(label) if lk == "str" else label, op, unquote(value)))
            j += 3
        if j >= n:
            raise PromQLError("unterminated label matchers")
        return out, j + 1

    def range_after(j):
        if val(j) != "[":
            return None, j
        end = skip_group(j, "[", "]")
        return "".join(t[1] for t in toks[j + 1:end - 1]), end

    while i < n:
        kind, tok = toks[i]
        nxt = val(i + 1)
        if kind == "id":
            low = tok.lower()
            if low in LABEL_LIST_KEYWORDS:
                i = skip_group(i + 1, "(", ")") if nxt == "(" else i + 1
                continue
            if low in KEYWORDS:
                i += 1
                if low == "offset":
                    if val(i) == "-":
                        i += 1
                    i += 1
                continue
            if nxt == "(":
                stack.append(tok)
                i += 2
                continue
            if tok in AGGREGATIONS and nxt in ("by", "without"):
                pending = tok
                i += 1
                continue
            sel = Selector(tok, func=stack[-1] if stack else None)
            i += 1
            if val(i) == "{":
                sel.matchers, i = matchers(i)
            sel.range, i = range_after(i)
            selectors.append(sel)
            continue
        if tok == "{":
            ms, i = matchers(i)
            names = [v for (lbl, op, v) in ms if lbl == "__name__" and op == "="]
            sel = Selector(names[0] if names else "", ms, func=stack[-1] if stack else None)
            sel.range, i = range_after(i)
            selectors.append(sel)
            continue
        if tok == "(":
            stack.append(pending)
            pending = None
        elif tok == ")":
            if not stack:
                raise PromQLError("unbalanced ')'")
            stack.pop()
        elif tok == "[":
            i = skip_group(i, "[", "]")
            continue
        elif tok in ("]", "}"):
            raise PromQLError(f"unbalanced {tok!r}")
        elif tok == "@":
            i += 1
            if val(i) in ("start", "end"):
                i += 3
                continue
        i += 1
    if stack:
        raise PromQLError("unbalanced '('")
    return selectors


VAR_REF = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")


def variables_in(expr):
    return {next(g for g in m.groups() if g) for m in VAR_REF.finditer(expr)}


def substitute(expr, values):
    def repl(m):
        name = next(g for g in m.groups() if g)
        return values.get(name, m.group())
    return VAR_REF.sub(repl, expr)


def regex_alternatives(value):
    """The literal values of a regex that is an alternation of literals
    (dots allowed, escaped or not), or None."""
    if not re.fullmatch(r"(?:[\w.\-]|\\\.)+(?:\|(?:[\w.\-]|\\\.)+)*", value):
        return None
    return [v.replace("\\.", ".") for v in value.split("|")]


def promql_rules(out, dashboards):
    """Every PromQL of the dashboards, variables replaced, as recording rules."""
    lines = ["# Generated by dashboards/check.py for `promtool check rules`.", "groups:"]
    for f in dashboards:
        d = json.loads(Path(f).read_text(encoding="utf-8"))
        values = dict(BUILTIN_VALUES)
        for v in (d.get("templating") or {}).get("list") or []:
            values.setdefault(v.get("name"), "keyshift_check_value")
        lines.append(f"  - name: {json.dumps(Path(f).name)}")
        lines.append("    rules:")
        for n, q in enumerate(queries(d)):
            expr = q.expr
            if q.kind == "variable":
                expr = variable_expr(expr)[0]
                if not expr:
                    continue
            lines.append(f"      # {q.where}")
            slug = re.sub(r"[^A-Za-z0-9]+", "_", Path(f).stem)
            lines.append(f"      - record: keyshift_dashboard_check:{slug}_{n}")
            lines.append(f"        expr: {json.dumps(substitute(expr, values), ensure_ascii=False)}")
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0
