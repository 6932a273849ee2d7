"""The layers hold: mtv_core imports nothing of the node pack, the trainer, the lab, ComfyUI or the lab's heavy
packages; its subpackages import each other in one direction only; importing the pack is light."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "mtv_core"
FORBIDDEN = {"nodes", "trainer", "mtv_lab", "cv2", "matplotlib", "comfy", "folder_paths", "server"}


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved), at any depth in the file."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1] if path.name != "__init__.py"
                       else path.relative_to(ROOT).parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names.add(base)
    return names


def unit(module: str) -> str:
    """The layer a module belongs to: a subpackage of mtv_core, or a top-level module of it."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "mtv_core" and len(parts) > 1 else parts[0]


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_imports_no_outer_layer(path):
    bad = {name for name in imports_of(path) if name.split(".")[0] in FORBIDDEN}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_library_layers_form_no_cycle():
    graph = {}
    for path in CORE.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        graph.setdefault(unit(module), set()).update(
            unit(name) for name in imports_of(path) if name.startswith("mtv_core") and unit(name) != unit(module))
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import cycle: {' -> '.join(trail + [node])}"
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            visit(target, trail + [node])
        state[node] = "done"

    for node in sorted(graph):
        visit(node, [])


def test_importing_every_library_module_loads_neither_opencv_nor_matplotlib():
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in CORE.rglob("*.py")
                     if p.name != "__main__.py")
    code = f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\nprint(sorted({{'cv2', 'matplotlib'}} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
