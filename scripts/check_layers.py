#!/usr/bin/env python3
"""Checks that every header under include/zeroclip includes only its own layer or the layers the
table in docs/ARCHITECTURE.md allows (between the `layers:begin` and `layers:end` markers: that
table is the one written copy, read here), with relative "..." includes that resolve, and no
include cycle. Also checks that the backend op table of docs/ARCHITECTURE.md (`ops:begin` ..
`ops:end`) is the one ZEROCLIP_BACKEND_OPS in backend/backend.hpp lists.

  check_layers.py [--root REPO]            check the tree (exit 1 and a list of violations)
  check_layers.py --self-test              prove the checks fail: an upward include, a cycle, an
                                           unclassified header, a stale op table, planted in copies
  check_layers.py --print-ops              the op table for the docs, from backend.hpp
  check_layers.py --contract-compiler CXX  compile a backend that lacks ops: must fail, naming them
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
EXEMPT_DIRS = ("detail/image/third_party/",)  # vendored code, never includes zeroclip headers
# The headers that read or write JSON, the only ones that may include nlohmann/json (so the
# backends, nn/ and models/ compile without it).
JSON_HEADERS = {"io/config_json.hpp", "io/safetensors.hpp", "detail/text/bpe.hpp"}


def read_table(doc, name):
    """Rows of the markdown table between <!-- name:begin --> and <!-- name:end -->."""
    text = open(doc, encoding="utf-8").read()
    m = re.search(r"<!-- %s:begin -->(.*?)<!-- %s:end -->" % (name, name), text, re.S)
    if not m:
        raise SystemExit(f"{doc}: no <!-- {name}:begin --> ... <!-- {name}:end --> block")
    rows = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or set(cells[0]) <= set("-: ") or cells[0].lower() in ("layer", "op"):
            continue
        rows.append(cells)
    return rows


def layer_table(doc):
    """[(layer, [patterns], {allowed layers})] from the docs' table."""
    table = []
    for layer, files, allowed in read_table(doc, "layers"):
        patterns = re.findall(r"`([^`]+)`", files)
        may = {a.strip() for a in allowed.split(",") if a.strip() not in ("", "—", "-")}
        table.append((layer, patterns, may))
    names = {t[0] for t in table}
    for layer, _, may in table:
        if "everything" in may:
            may.discard("everything")
            may |= names
        unknown = may - names
        if unknown:
            raise SystemExit(f"{doc}: layer {layer} may include unknown layers {sorted(unknown)}")
    return table


def layer_of(rel, table):
    """The layer of a header path relative to include/zeroclip: an exact file pattern wins over a
    folder pattern (dir/**), the longest folder over shorter ones."""
    best, best_len = None, -1
    for layer, patterns, _ in table:
        for p in patterns:
            if p.endswith("/**"):
                prefix = p[:-2]
                if rel.startswith(prefix) and len(prefix) > best_len:
                    best, best_len = layer, len(prefix)
            elif rel == p:
                return layer
    return best


def headers(root):
    base = os.path.join(root, "include", "zeroclip")
    for d, _, files in os.walk(base):
        for f in sorted(files):
            if f.endswith((".hpp", ".h")):
                rel = os.path.relpath(os.path.join(d, f), base).replace(os.sep, "/")
                if not rel.startswith(EXEMPT_DIRS):
                    yield rel


def check_tree(root):
    """Violations (strings) of the tree at `root`; empty when it is right."""
    doc = os.path.join(root, "docs", "ARCHITECTURE.md")
    table = layer_table(doc)
    allowed = {layer: may for layer, _, may in table}
    base = os.path.join(root, "include", "zeroclip")
    problems, graph = [], {}
    for rel in headers(root):
        layer = layer_of(rel, table)
        if layer is None:
            problems.append(f"{rel}: no layer in docs/ARCHITECTURE.md's table matches this header")
            continue
        text = open(os.path.join(base, rel), encoding="utf-8", errors="replace").read()
        graph[rel] = []
        for kind, target in INCLUDE.findall(text):
            if kind == "<":
                if target.startswith("nlohmann/") and rel not in JSON_HEADERS:
                    problems.append(f"{rel}: includes <{target}> but reads no JSON (JSON headers: "
                                    f"{', '.join(sorted(JSON_HEADERS))})")
                if target.startswith("zeroclip/"):
                    problems.append(f"{rel}: #include <{target}>: use a relative \"...\" include inside include/")
                continue
            resolved = os.path.normpath(os.path.join(os.path.dirname(rel), target)).replace(os.sep, "/")
            if resolved.startswith(EXEMPT_DIRS):
                continue
            if not os.path.isfile(os.path.join(base, resolved)):
                problems.append(f"{rel}: #include \"{target}\" does not resolve to a header of include/zeroclip")
                continue
            graph[rel].append(resolved)
            to = layer_of(resolved, table)
            if to is not None and to != layer and to not in allowed[layer]:
                problems.append(f"{rel} ({layer}) includes {resolved} ({to}): {layer} may include only "
                                f"{', '.join(sorted(allowed[layer])) or 'nothing'} and itself")
    problems += find_cycles(graph)
    problems += check_ops(root)
    return problems


def find_cycles(graph):
    state, stack, out = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in graph.get(n, []):
            if state.get(m) == 1:
                out.append("include cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return out


OP = re.compile(r"\b(OPT?)\(CTX,\s*(?:(has_\w+),\s*)?([\w:]+),\s*(\w+),\s*\(([^()]*)\)\)", re.S)


def backend_ops(root):
    """[(required, name, signature)] from ZEROCLIP_BACKEND_OPS in backend/backend.hpp."""
    text = open(os.path.join(root, "include/zeroclip/backend/backend.hpp"), encoding="utf-8").read()
    m = re.search(r"#define ZEROCLIP_BACKEND_OPS\(OP, OPT, CTX\)(.*?)\n(?!.*\\$)", text, re.S)
    body = re.sub(r"\\\n", " ", text[m.start():].split("\nnamespace", 1)[0])
    ops = []
    for kind, _, result, name, params in OP.findall(body):
        params = re.sub(r"\s+", " ", params.strip())
        ops.append((kind == "OP", name, f"{result} {name}({params})"))
    return ops


def ops_table(root):
    lines = ["| op | | signature (every op is const) |", "|---|---|---|"]
    for required, name, sig in backend_ops(root):
        lines.append(f"| `{name}` | {'required' if required else 'optional'} | `{sig}` |")
    return "\n".join(lines)


def check_ops(root):
    ops = backend_ops(root)
    if len(ops) < 20:
        return [f"backend/backend.hpp: ZEROCLIP_BACKEND_OPS parsed to {len(ops)} ops; the parser is out of date"]
    doc = os.path.join(root, "docs", "ARCHITECTURE.md")
    documented = [(r[0].strip("`"), r[1], r[2].strip("`")) for r in read_table(doc, "ops")]
    wanted = [(name, "required" if req else "optional", sig) for req, name, sig in ops]
    if documented != wanted:
        return ["docs/ARCHITECTURE.md's op table differs from ZEROCLIP_BACKEND_OPS; replace it with the "
                "output of scripts/check_layers.py --print-ops"]
    return []


def self_test(root):
    """Each planted fault must be reported; the unmodified copy must pass."""
    failures = []

    def planted(name, edit, needle):
        with tempfile.TemporaryDirectory() as tmp:
            for d in ("include", "docs"):
                shutil.copytree(os.path.join(root, d), os.path.join(tmp, d))
            if edit:
                edit(tmp)
            found = check_tree(tmp)
            if needle is None and found:
                failures.append(f"{name}: the copy of the tree should pass, got {found}")
            if needle is not None and not any(needle in p for p in found):
                failures.append(f"{name}: expected a violation containing {needle!r}, got {found}")

    def append(path, text):
        def edit(tmp):
            with open(os.path.join(tmp, path), "a", encoding="utf-8") as f:
                f.write(text)
        return edit

    planted("clean copy", None, None)
    planted("upward include", append("include/zeroclip/tensor.hpp", '\n#include "models/clip.hpp"\n'),
            "tensor.hpp (tensor) includes models/clip.hpp (models)")
    planted("backend includes config", append("include/zeroclip/backend/backend.hpp",
                                                '\n#include "../models/config.hpp"\n'), "backend/backend.hpp (backend)")
    planted("io uses the CPU backend", append("include/zeroclip/detail/io/convert.hpp",
                                               '\n#include "../../backend/cpu/parallel.hpp"\n'), "(io) includes")
    planted("cycle", append("include/zeroclip/error.hpp", '\n#include "tensor.hpp"\n'), "include cycle")
    planted("absolute include", append("include/zeroclip/nn/mlp.hpp", "\n#include <zeroclip/tensor.hpp>\n"),
            "use a relative")
    planted("JSON outside io", append("include/zeroclip/models/config.hpp", "\n#include <nlohmann/json.hpp>\n"),
            "reads no JSON")
    planted("unclassified header", lambda tmp: open(os.path.join(tmp, "include/zeroclip/stray.hpp"), "w").close(),
            "stray.hpp: no layer")

    def stale_ops(tmp):
        p = os.path.join(tmp, "docs", "ARCHITECTURE.md")
        original = open(p, encoding="utf-8").read()
        text = original.replace("| `matmul` |", "| `matmul_nn` |")
        assert text != original, "the planted fault must change the op table"
        open(p, "w", encoding="utf-8").write(text)
    planted("stale op table", stale_ops, "op table differs")
    return failures


def contract_compile_test(root, cxx):
    """A backend lacking ops must fail to compile at ZEROCLIP_CHECK_BACKEND, naming each op."""
    src = r'''#include <zeroclip/backend/backend.hpp>
struct partial_backend {
    using tensor = zeroclip::tensor;
    tensor upload(const zeroclip::tensor& t) const { return t; }
    int softmax_rows(const tensor&) const { return 0; }  // wrong result type
};
ZEROCLIP_CHECK_BACKEND(partial_backend);
'''
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "partial_backend.cpp")
        open(path, "w").write(src)
        r = subprocess.run([cxx, "-std=c++17", "-fsyntax-only", "-I", os.path.join(root, "include"), path],
                           capture_output=True, text=True)
    out = r.stdout + r.stderr
    failures = []
    if r.returncode == 0:
        failures.append("a backend lacking ops compiled")
    for req, name, sig in backend_ops(root):
        said = "partial_backend lacks the backend op `" in out and f" {name}(" in out
        if req and name != "upload" and not said:
            failures.append(f"no static_assert message names the missing op {name}")
    if "lacks the backend op `tensor upload(" in out:
        failures.append("upload is present but reported missing")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--print-ops", action="store_true")
    ap.add_argument("--contract-compiler")
    a = ap.parse_args()
    if a.print_ops:
        print(ops_table(a.root))
        return 0
    if a.contract_compiler:
        problems = contract_compile_test(a.root, a.contract_compiler)
    elif a.self_test:
        problems = self_test(a.root)
    else:
        problems = check_tree(a.root)
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
