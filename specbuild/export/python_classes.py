"""One nn.Module class of an exported file: `__init__` builds the layers, `forward` calls them.

Each node is written as compiler/compile.py builds it, so the state_dict keys and the
results are the built model's: a layer is `self.<node> = nn.<Type>(...)` (a block's
class, an `nn.Sequential` of copies for `repeat:`, a list with conditional appends for a
Sequential whose items have `when:`), a tensor function a plain torch call or operator in
forward, a `share:` a second call of the same submodule, `when:` an `if`.
"""
from __future__ import annotations

import re

from .. import registry
from ..errors import SpecError
from ..inputs import DTYPES
from ..shapes.index import parse_index
from ..spec.graph import ancestors_of_outputs
from ..spec.variables import REQUIRED
from .python_format import (INDENT, MISSING, WIDTH, Assign, Atom, Comment, Group, If, Kw, Repeat, Star, call,
                            constant, docstring, index_code, layout, literal, render, same)
from .python_scope import Where

_INFIX = {"operator.add": "+", "operator.sub": "-", "operator.mul": "*", "operator.truediv": "/",
          "operator.matmul": "@"}
_SIMPLE = re.compile(r"^(not )?self\.\w+$")


def _is_layer(value) -> bool:
    return isinstance(value, dict) and "type" in value


class ClassWriter:
    def __init__(self, scope, plans: dict, checked, used: set):
        self.scope, self.plans, self.checked, self.used = scope, plans, checked, used
        self.graph = scope.graph

    # --- names ------------------------------------------------------------------------------------

    def target(self, target: str) -> str:
        """A registry target as the generated file spells it: nn.Linear, F.gelu, torch.cat."""
        for prefix, short in (("torch.nn.functional.", "F"), ("torch.nn.", "nn"), ("operator.", "operator")):
            if target.startswith(prefix):
                self.used.add(short)
                return short + "." + target[len(prefix):]
        self.used.add("torch")
        return target

    def raw(self, node) -> dict:
        return self.scope.raw["layers"][node.path[-1]]

    def error(self, node_name: str, path: tuple, type_name: str):
        return SpecError([self.checked.spec.problem(
            f"layer type {type_name!r} was registered from Python (register_layer), so its code is not in the "
            "spec and a standalone file cannot hold it", path, node=node_name,
            hint="export to a file that imports your module, or write the layer with torch.nn types")])

    # --- the class --------------------------------------------------------------------------------

    def source(self, doc: str | None) -> list[str]:
        scope = self.scope
        init = self.init_statements()
        forward = self.forward_statements()
        lines = [f"class {scope.class_name}(nn.Module):"] + docstring(doc or "", INDENT)
        lines += [""] if len(lines) > 1 else []
        lines += layout(Group("def __init__", self.signature()), INDENT, "", ":")
        body = [Assign("", Atom("super().__init__()"))]
        body += [Assign(f"self.{attribute} = ", Atom(local)) for local, attribute in scope.attributes.items()]
        lines += render(body + init, INDENT * 2)
        inputs = [Atom("self")] + [Atom(scope.vars[name]) for name in self.graph.inputs]
        lines += [""] + layout(Group("def forward", inputs), INDENT, "", ":")
        return lines + render(forward, INDENT * 2)

    def signature(self) -> list:
        items, star, defaulted = [Atom("self")], False, False
        for param, default in self.scope.params.items():
            local = self.scope.locals[param]
            if default is REQUIRED:
                if defaulted and not star:
                    items.append(Atom("*"))
                    star = True
                items.append(Atom(local))
            else:
                defaulted = True
                items.append(Atom(f"{local}={constant(default, tuples=True).flat()}"))
        if self.scope.extras and not star:
            items.append(Atom("*"))
        items += [Atom(f"{e.name}=None" if e.optional else e.name) for e in self.scope.extras]
        return items

    # --- __init__ ---------------------------------------------------------------------------------

    def init_statements(self) -> list:
        out = []
        for name in self.graph.order:
            node = self.graph.nodes.get(name)
            entry = registry.lookup(node.type) if node is not None else None
            if node is None or node.share is not None or entry is not None and not entry.makes_module:
                continue
            raw = self.raw(node)
            body = [Comment(" ".join(str(raw["doc"]).split()))] if raw.get("doc") else []
            body += self.node_module(node, raw)
            condition = self.scope.condition(raw.get("when"), forward=False)
            out += [If(condition, body)] if condition else body
        for node in self.graph.nodes.values():
            for param, source in node.tie.items():
                path = "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in source.split("."))
                out.append(Assign(f"self.{node.name}.{param} = ", Atom("self" + path)))
        return out

    def node_module(self, node, raw) -> list:
        """The statements building a node's module into self.<node>."""
        target = f"self.{node.name} = "
        shapes = [use.inner.get(node.name, MISSING) for use in self.scope.uses]
        where = Where(node.name, list(node.inputs), node.name, node.path)
        counted = raw.get("repeat", 1)
        if not isinstance(counted, str):
            if node.repeat > 1:
                return self.copies(node, shapes, where, node.repeat, None, target)
            args = node.args
            if node.copies:     # `repeat: [{...}]`, one copy: the layer itself, with the copy's arguments
                args = {**node.args, **node.copies[0]}
                shapes = [s.inner.get("0", MISSING) if s is not MISSING else MISSING for s in shapes]
            statements, expr = self.construct(node.type, args, shapes, where)
            return statements + [Assign(target, expr)]
        # a count over the block's params; a use with one copy has the layer itself, as compile builds it
        times = self.scope.value(counted).flat()
        looped = [s if s is not MISSING and s.type is None else MISSING for s in shapes]
        single = [s if s is not MISSING and s.type is not None else MISSING for s in shapes]
        loop = None
        if any(s is not MISSING for s in looped):
            count = max(len(s.inner) for s in looped if s is not MISSING)
            loop = self.copies(node, looped, where, count, times, target)
        if all(s is MISSING for s in single):
            return loop
        statements, expr = self.construct(node.type, node.args, single, where)
        return statements + [Assign(target, expr)] if loop is None else [
            If(f"{times} > 1", loop, statements + [Assign(target, expr)])]

    def copies(self, node, shapes: list, where: Where, count: int, times: str | None, target: str) -> list:
        """`repeat:` as an nn.Sequential of the copies (a loop where they are alike)."""
        units = []
        for i in range(count):
            args = {**node.args, **(node.copies[i] if node.copies else {})}
            copies = [s.inner.get(str(i), MISSING) if s is not MISSING else MISSING for s in shapes]
            units.append(self.construct(node.type, args, copies, where.within(i, i == 0)))
        statements = [s for prelude, _ in units for s in prelude]
        alike = len({expr.flat() for _, expr in units}) == 1 and not statements
        sequential = self.target("torch.nn.Sequential")
        if times is not None:
            if alike:
                return [Assign(target, call(sequential, Star(Repeat(units[0][1], times))))]
            if len({expr.flat() for _, expr in units[1:]}) == 1 and not statements:
                return [Assign(target, call(sequential, units[0][1], Star(Repeat(units[1][1], f"{times} - 1"))))]
            raise SpecError([self.checked.spec.problem(
                "`repeat:` over the block's params makes copies that differ (in their sizes) as no loop can write",
                node.path + ("repeat",), node=node.name, hint="give `repeat:` a number")])
        if alike and count >= 3:
            return [Assign(target, call(sequential, Star(Repeat(units[0][1], str(count)))))]
        return statements + [Assign(target, Group(sequential, [expr for _, expr in units]))]

    def construct(self, type_name: str, args: dict, shapes: list, where: Where) -> tuple[list, object]:
        """(statements before, the expression) building one layer, block or Sequential."""
        if type_name in self.plans:
            return [], self.block_call(type_name, args, shapes, where)
        entry = registry.lookup(type_name)
        if entry.kind == "user":
            raise self.error(where.node, where.path, type_name)
        if entry.call == "sequential":
            return self.sequential(entry, args, shapes, where)
        filled = [s.args if s is not MISSING else MISSING for s in shapes]
        return [], self.module_call(entry, args, filled, where)

    def module_call(self, entry, args: dict, filled: list, where: Where) -> Group:
        keys = [k for k in entry.args if k in args or any(f is not MISSING and k in f for f in filled)]
        items, positional = [], True
        for key in keys + [k for k in args if k not in keys and k != "type"]:
            values = [f.get(key, MISSING) if f is not MISSING else MISSING for f in filled]
            if key in args:
                expr = self.argument(args[key], values, where.within(key, True))
            else:
                expr = self.scope.resolve(values, self.scope.site(where, key))
                if expr is None:
                    continue
            if positional and entry.args.get(key, {}).get("required"):
                items.append(expr)
            else:
                positional = False
                items.append(Kw(key, expr))
        return Group(self.target(entry.target), items)

    def argument(self, raw, filled: list, where: Where):
        """A layer's argument as written: a nested layer is built, a list is a tuple."""
        if _is_layer(raw):
            entry = registry.lookup(raw["type"])
            if entry.kind == "user":
                raise self.error(where.node, where.path, raw["type"])
            return self.module_call(entry, {k: v for k, v in raw.items() if k != "type"}, filled, where)
        if isinstance(raw, list) and raw and all(_is_layer(v) for v in raw):
            return Group("", [self.argument(v, [f[i] if f is not MISSING else MISSING for f in filled],
                                            where.within(i, False)) for i, v in enumerate(raw)], "[]")
        return self.scope.value(raw, tuples=True)

    def sequential(self, entry, args: dict, shapes: list, where: Where) -> tuple[list, object]:
        scope, at = self.scope, [0] * len(shapes)
        parts = []
        for i, item in enumerate(args[entry.operand]):
            when = item.get("when", True)
            per_use = []
            for u, shape in enumerate(shapes):
                if shape is MISSING or not scope.included(when, u):
                    per_use.append(MISSING)
                else:
                    per_use.append(shape.inner[str(at[u])])
                    at[u] += 1
            if when is False:
                continue
            own = {k: v for k, v in item.items() if k not in ("type", "when")}
            statements, expr = self.construct(item["type"], own, per_use, where.within(i, i == 0))
            parts.append((scope.condition(when, forward=False), statements, expr))
        sequential = self.target(entry.target)
        if all(condition is None for condition, _, _ in parts):
            return [s for _, prelude, _ in parts for s in prelude], Group(sequential, [e for _, _, e in parts])
        layers = scope.fresh("layers")
        out, run = [Assign(f"{layers} = ", Atom("[]"))], []

        def flush():
            if len(run) > 1:
                out.append(Assign("", call(f"{layers}.extend", Group("", list(run), "[]"))))
            elif run:
                out.append(Assign("", call(f"{layers}.append", run[0])))
            run.clear()

        for condition, statements, expr in parts:
            if condition is None:
                if statements:
                    flush()
                    out.extend(statements)
                run.append(expr)
            else:
                flush()
                out.append(If(condition, statements + [Assign("", call(f"{layers}.append", expr))]))
        flush()
        return out, call(sequential, Star(Atom(layers)))

    def block_call(self, block: str, args: dict, shapes: list, where: Where) -> Group:
        plan, scope = self.plans[block], self.scope
        items = [Kw(plan.locals[p], scope.value(args[p])) for p in plan.params if p in args]
        for extra in plan.extras:
            values = [extra.values[plan.index[id(s)]] if s is not MISSING else MISSING for s in shapes]
            if extra.input is not None:
                site = scope.site(where, extra.arg, list(plan.graph.inputs).index(extra.input), own=extra.name)
            else:
                site = scope.site(Where(where.label, None, where.node, where.path), extra.name)
            expr = scope.resolve(values, site)
            if expr is not None:
                items.append(Kw(extra.name, expr))
        return Group(plan.class_name, items)

    # --- forward ----------------------------------------------------------------------------------

    def forward_statements(self) -> list:
        scope, needed, out = self.scope, ancestors_of_outputs(self.graph), []
        for name in self.graph.order:
            node = self.graph.nodes.get(name)
            if node is None or name not in needed:
                continue
            value, var = self.node_value(node), scope.vars[name]
            condition = scope.condition(self.raw(node).get("when"), forward=True)
            if condition is None:
                out.append(Assign(f"{var} = ", value))
                continue
            first = scope.vars[node.inputs[0]]
            inline = f"{value.flat()} if {condition} else {first}"
            if _SIMPLE.match(condition) and len(INDENT * 2 + f"{var} = " + inline) <= WIDTH:
                out.append(Assign(f"{var} = ", Atom(inline)))
            else:
                out.append(If(condition, [Assign(f"{var} = ", value)], [Assign(f"{var} = ", Atom(first))]))
        return out + [Assign("return ", self.outputs())]

    def outputs(self):
        outputs, var = self.graph.outputs, self.scope.vars
        if isinstance(outputs, dict):
            return Group("", [Atom(f"{literal(k)}: {var[v]}") for k, v in outputs.items()], "{}")
        if isinstance(outputs, list):
            return Atom(f"({var[outputs[0]]},)") if len(outputs) == 1 else Atom(", ".join(var[o] for o in outputs))
        return Atom(var[outputs])

    def node_value(self, node):
        ins = [Atom(self.scope.vars[ref]) for ref in node.inputs]
        if node.share is not None:
            return Group(f"self.{node.share}", ins)
        entry = registry.lookup(node.type)
        if entry is None or entry.makes_module:
            keywords = [Kw(key, Atom(self.scope.vars[value]) if isinstance(value, str) else constant(value))
                        for key, value in node.forward.items()]
            return Group(f"self.{node.name}", ins + keywords)
        return self.function(entry, node, ins)

    def keywords(self, entry, args: dict) -> list:
        """The keyword arguments compile passes: None left out, `explicit` ones at their default."""
        out = []
        for key, raw in args.items():
            if raw is None or key == entry.operand:
                continue
            if key == "dtype" and isinstance(raw, str) and "${" not in raw:
                self.used.add("torch")
                out.append(Kw(key, Atom(f"torch.{DTYPES[raw]}")))
            else:
                out.append(Kw(key, self.scope.value(raw, forward=True, tuples=True)))
        return out + [Kw(key, constant(entry.args[key]["default"], tuples=True))
                      for key in entry.explicit if key not in args]

    def function(self, entry, node, ins: list):
        args, how = node.args, entry.call
        kwargs = self.keywords(entry, args)
        first = ins[0].text
        if how == "function" and entry.target in _INFIX and len(ins) == 2 and not kwargs:
            return Atom(f" {_INFIX[entry.target]} ".join(i.text for i in ins))
        if how == "variadic" and entry.target in _INFIX:
            return Atom(f" {_INFIX[entry.target]} ".join(i.text for i in ins))
        if how == "method":
            items = [self.scope.value(v, forward=True) for v in args[entry.operand]]
            return Group(f"{first}.{entry.target.rsplit('.', 1)[1]}", items + kwargs)
        if how == "index":
            return Atom(first + self.index(entry, node))
        if how == "list":
            return Group(self.target(entry.target), [Group("", ins, "[]")] + kwargs)
        if how == "training":
            value = args.get(entry.operand)
            if isinstance(value, str) or value:
                kwargs.append(Kw(entry.operand, Atom(f"{self.scope.value(value, forward=True).flat()} "
                                                     "if self.training else 0.0")))
        if how == "sized":
            dim = self.scope.value(args[entry.operand], forward=True).flat()
            return Group(self.target(entry.target), [Atom(f"{first}.size({dim})")] + kwargs
                         + [Kw("device", Atom(f"{first}.device"))])
        if how == "literal":
            return Group(self.target(entry.target), [self.scope.value(args[entry.operand], forward=True)] + kwargs
                         + [Kw("device", Atom(f"{first}.device"))])
        if how == "variadic":
            out = Group(self.target(entry.target), ins[:2])
            for other in ins[2:]:
                out = Group(self.target(entry.target), [out, other])
            return out
        return Group(self.target(entry.target), ins + kwargs)

    def index(self, entry, node) -> str:
        raw = node.args[entry.operand]
        if entry.parse is None:
            return f"[{self.scope.value(raw, forward=True).flat()}]"
        if isinstance(raw, str) and "${" in raw:   # written per use: every use must read the same
            texts = [use.inner[node.name].args[entry.operand] for use in self.scope.uses if node.name in use.inner]
            if not all(same(t, texts[0]) for t in texts):
                raise SpecError([self.checked.spec.problem(
                    f"`at: {raw}` differs between the block's uses: a standalone file cannot write it",
                    node.path + (entry.operand,), node=node.name, hint="write the index without params")])
            raw = texts[0]
        return index_code(parse_index(raw))
