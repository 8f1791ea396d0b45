"""The house rules of the source tree that a reader relies on: no module of
services/ imports one that imports it back (not even for type hints, nor inside
a function), and no file grows past LONG lines without saying why at its top."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
LONG = 650
REASON = "Why one file:"      # a long file says, near its top, why it is not split


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: pathlib.Path, known: set[str]) -> set[str]:
    """Every services module ``path`` imports, wherever the import statement is."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from services.socket import credentials" names a module; "from x import Name" its module
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        out |= {n for n in names if n in known}
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}            # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def services_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in (ROOT / "services").rglob("*.py")}
    known = set(files)
    graph = {m: imports_of(p, known) - {m} for m, p in files.items()}
    # importing services.socket.x runs services/socket/__init__.py first: that edge is not a back-import
    return {m: {n for n in deps if not m.startswith(n + ".")} for m, deps in graph.items()}


def test_no_import_cycle_among_services():
    assert find_cycle(services_graph()) is None, " -> ".join(find_cycle(services_graph()))


def test_the_cycle_finder_finds_one_through_a_type_hint_import(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("import b\n")
    b.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from a import A\n")
    graph = {"a": imports_of(a, {"a", "b"}), "b": imports_of(b, {"a", "b"})}
    assert find_cycle(graph) == ["a", "b", "a"]


def test_the_socket_types_import_nothing_of_the_layer():
    deps = services_graph()["services.socket.types"]
    assert deps == set()


def test_long_files_say_why():
    unexplained = []
    for p in [*(ROOT / "services").rglob("*.py"), *(ROOT / "shared").rglob("*.py"), ROOT / "launcher.py"]:
        text = p.read_text()
        if text.count("\n") > LONG and REASON not in "\n".join(text.splitlines()[:40]):
            unexplained.append(f"{p.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert not unexplained, f"over {LONG} lines without '{REASON}' near the top: {unexplained}"


def test_the_readme_layout_names_every_source_file():
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):text.index("## How it works")]
    missing = [str(p.relative_to(ROOT)) for p in [*(ROOT / "services").rglob("*.py"), *(ROOT / "shared").rglob("*.py")]
               if p.name != "__init__.py" and p.stem not in layout]
    assert not missing, f"README.md's layout does not mention {missing}"
