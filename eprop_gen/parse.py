"""parse: model text -> ModelAST. Syntax errors become Diagnostics that point into the user's file."""
from __future__ import annotations

import functools

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.indenter import DedentError, Indenter

from .errors import Diagnostic, ModelError, Span
from .paths import resource_dir
from .ir import AssignmentDecl, CallDecl, Declaration, LearningDecl, ModelAST, OdeDecl, PortDecl, SpikeDecl


class _ModelIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR"]
    CLOSE_PAREN_types = ["RPAR"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 4


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = (resource_dir("grammar") / "eprop.lark").read_text()
    return Lark(grammar, parser="lalr", postlex=_ModelIndenter(), propagate_positions=True,
                maybe_placeholders=True)


# What a user should read instead of lark's terminal names.
_TOKEN_WORDS = {
    "_NL": "end of line", "_INDENT": "an indented block", "_DEDENT": "end of the block",
    "NAME": "a name", "NUMBER": "a number", "LPAR": "'('", "RPAR": "')'", "COLON": "':'",
    "EQUAL": "'='", "ASSIGN": "'='", "AUGASSIGN": "'+='", "PRIME": "\"'\"", "COMPARE": "a comparison",
    "COMMA": "','", "PLUS": "'+'", "MINUS": "'-'", "STAR": "'*'", "SLASH": "'/'", "POW": "'**'",
    "$END": "end of file",
}


def parse_model(source: str, file: str = "<string>") -> ModelAST:
    text = source if source.endswith("\n") else source + "\n"
    try:
        tree = _parser().parse(text)
    except UnexpectedInput as exc:
        raise ModelError([_syntax_diagnostic(exc, text, file)], source) from None
    except DedentError:
        line = _first_bad_dedent(text)
        d = Diagnostic("E001", "indentation does not match any outer block",
                       Span(line, 1, 2, file), "indent with the same number of spaces as the enclosing block")
        raise ModelError([d], source) from None
    return _build_ast(tree.children[-1], text, file)


def _syntax_diagnostic(exc: UnexpectedInput, text: str, file: str) -> Diagnostic:
    line, col = max(exc.line, 1), max(exc.column, 1)
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else "?"
        return Diagnostic("E001", f"unexpected character {char!r}", Span(line, col, col + 1, file),
                          "names use letters, digits and '_'; derivatives are written v' = ...")
    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "$END":
            lines = text.splitlines() or [""]
            line, col = len(lines), len(lines[-1]) + 1
            what = "end of file"
        elif tok.type in ("_NL", "_DEDENT", "_INDENT"):
            what = _TOKEN_WORDS[tok.type]
            if tok.type == "_NL":
                line, col = tok.line, tok.column
        else:
            what = f"{tok.value!r}"
        width = max(1, len(str(tok.value))) if tok.type not in ("_NL", "_DEDENT", "_INDENT", "$END") else 1
        expected = sorted({_TOKEN_WORDS.get(t, repr(t.strip('"').lower())) for t in exc.expected})
        hint = "expected " + ", ".join(expected[:6]) if expected else ""
        if "PRIME" in exc.expected and tok.type in ("EQUAL", "ASSIGN"):
            hint = "an equation gives a derivative: write v' = ..."
        return Diagnostic("E001", f"unexpected {what}", Span(line, col, col + width, file), hint)
    return Diagnostic("E001", "syntax error", Span(line, col, col + 1, file))


def _first_bad_dedent(text: str) -> int:
    levels = [0]
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw.expandtabs(4)) - len(raw.expandtabs(4).lstrip())
        if indent > levels[-1]:
            levels.append(indent)
        else:
            while indent < levels[-1]:
                levels.pop()
            if indent != levels[-1]:
                return number
    return 1


def _span(node, file: str) -> Span:
    if isinstance(node, Token):
        return Span(node.line, node.column, node.column + len(node.value), file)
    meta = node.meta
    end = meta.end_column if meta.end_line == meta.line else meta.column + 1
    return Span(meta.line, meta.column, max(end, meta.column + 1), file)


_SECTIONS = ("parameters", "state", "inputs", "equations", "spike", "solver")


def _build_ast(model: Tree, text: str, file: str) -> ModelAST:
    name_tok, *sections = model.children
    found: dict[str, Tree] = {}
    duplicates = []
    for sec in sections:
        if sec.data in found:
            duplicates.append((sec.data, _span(sec, file)))
        else:
            found[sec.data] = sec
    return ModelAST(
        name=str(name_tok),
        file=file,
        source=text,
        parameters=_declarations(found.get("parameters"), file),
        states=_declarations(found.get("state"), file),
        ports=tuple(_port(p, file) for p in (found["inputs"].children if "inputs" in found else ())),
        odes=tuple(OdeDecl(str(o.children[0]), o.children[2], _span(o.children[0], file))
                   for o in (found["equations"].children if "equations" in found else ())),
        spike=_spike(found["spike"], file) if "spike" in found else None,
        solver=_call(found["solver"].children, file) if "solver" in found else None,
        span=_span(name_tok, file),
        duplicate_sections=tuple(duplicates),
        output=(found["output"].children[0], _span(found["output"], file)) if "output" in found else None,
        learning=_learning(found["learning"], file) if "learning" in found else None,
    )


def _learning(section: Tree, file: str) -> LearningDecl:
    traces, single, duplicates = [], {}, []
    for item in section.children:
        if item.data == "trace_update":
            name, _, value = item.children
            traces.append((str(name), value, _span(name, file)))
        elif item.data in single:
            duplicates.append((item.data, _span(item, file)))
        else:
            single[item.data] = (item.children[0], _span(item.children[0], file))
    return LearningDecl(tuple(traces), single.get("gradient"), single.get("regularisation"),
                        single.get("cutoff"), _span(section, file), tuple(duplicates), single.get("flush"),
                        single.get("reset_gradient"))


def _declarations(section: Tree | None, file: str) -> tuple[Declaration, ...]:
    if section is None:
        return ()
    out = []
    for d in section.children:
        name, value, unit = d.children
        out.append(Declaration(str(name), value, str(unit.children[0]) if unit is not None else None,
                               _span(name, file), _span(value, file),
                               _span(unit.children[0], file) if unit is not None else None))
    return tuple(out)


def _port(p: Tree, file: str) -> PortDecl:
    name = p.children[0]
    if p.data == "current_port":
        unit = p.children[1]
        return PortDecl(str(name), "current", None, "+=", None,
                        str(unit.children[0]) if unit is not None else None, _span(name, file), None,
                        _span(unit.children[0], file) if unit is not None else None)
    target = p.children[1]
    if p.data == "spike_port_jump":
        return PortDecl(str(name), "spike", str(target), "+=", None, None, _span(name, file), _span(target, file))
    op, value = p.children[2], p.children[3]
    return PortDecl(str(name), "spike", str(target), str(op), value, None, _span(name, file), _span(target, file))


def _assignment(a: Tree, file: str) -> AssignmentDecl:
    target, op, value = a.children
    return AssignmentDecl(str(target), str(op), value, _span(target, file))


def _call(children, file: str) -> CallDecl:
    name = children[0]
    args, kwargs = [], []
    arguments = next((c for c in children[1:] if isinstance(c, Tree) and c.data == "arguments"), None)
    for a in (arguments.children if arguments is not None else ()):
        if isinstance(a, Tree) and a.data == "keyword_argument":
            kwargs.append((str(a.children[0]), a.children[1], _span(a.children[0], file)))
        else:
            args.append(a)
    return CallDecl(str(name), tuple(args), tuple(kwargs), _span(name, file))


def _spike(section: Tree, file: str) -> SpikeDecl:
    threshold = refractory = surrogate = None
    reset: list[AssignmentDecl] = []
    adaptation: list[AssignmentDecl] = []
    seen: set[str] = set()
    duplicates = []
    for item in section.children:
        if item.data in seen:
            duplicates.append((item.data, _span(item, file)))
            continue
        seen.add(item.data)
        if item.data == "threshold":
            lhs, op, rhs = item.children
            threshold = (lhs, str(op), rhs, _span(item, file))
        elif item.data == "reset":
            reset = [_assignment(a, file) for a in item.children]
        elif item.data == "adaptation":
            adaptation = [_assignment(a, file) for a in item.children]
        elif item.data == "refractory":
            period, *held = item.children
            names = tuple((str(h), _span(h, file)) for h in held if h is not None)
            refractory = (period, names, _span(period, file))
        elif item.data == "surrogate":
            surrogate = _call(item.children, file)
    return SpikeDecl(threshold, tuple(reset), refractory, surrogate, _span(section, file), tuple(duplicates),
                     tuple(adaptation))
