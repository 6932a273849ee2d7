"""The layers hold. The library (mtv_core, less its command line) imports no application: not the node pack, the
trainer, the lab, the queue, ComfyUI or the lab's heavy packages, and it speaks in its own terms, not in flags. Its
subpackages import each other in one direction only; the model code knows nothing of serving or files; only the
loading place reads model files; no product code leans on test builders; no product file passes 400 lines."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "mtv_core"
FORBIDDEN = {"nodes", "trainer", "mtv_lab", "mtv_queue", "cv2", "matplotlib", "comfy", "folder_paths", "server"}
APPLICATIONS = {"mtv_core.cli", "mtv_core.__main__"}  # the command line, which lists the queue command by name
RUNTIME = ("mtv_core", "mtv_queue", "nodes", "trainer", "mtv_lab", "workflows")
PRODUCT = [ROOT / "__init__.py", *(path for folder in (*RUNTIME, "tools") for path in (ROOT / folder).rglob("*.py"))]


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


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def is_library(path: Path) -> bool:
    module = module_of(path)
    return module.startswith("mtv_core") and not any(module == app or module.startswith(app + ".") for app in APPLICATIONS)


LIBRARY = sorted(path for path in CORE.rglob("*.py") if is_library(path))


def ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", LIBRARY, ids=ids)
def test_the_library_imports_no_outer_layer(path):
    bad = {name for name in imports_of(path)
           if name.split(".")[0] in FORBIDDEN or any(name == app or name.startswith(app + ".") for app in APPLICATIONS)}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((ROOT / "mtv_queue").rglob("*.py")) + sorted((CORE / "cli").rglob("*.py")), ids=ids)
def test_the_applications_on_the_library_import_no_other_application(path):
    own = path.relative_to(ROOT).parts[0]
    bad = {name for name in imports_of(path) if name.split(".")[0] in FORBIDDEN - {own}}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", sorted((CORE / "models").rglob("*.py")), ids=ids)
def test_the_model_code_knows_nothing_of_serving_or_files(path):
    allowed = ("mtv_core.models", "mtv_core.spec", "mtv_core.errors", "mtv_core.attention")
    bad = {name for name in imports_of(path) if name.startswith("mtv_core") and not name.startswith(allowed)}
    bad |= {name for name in imports_of(path) if name.split(".")[0] == "safetensors"}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", LIBRARY, ids=ids)
def test_only_the_loading_place_reads_model_files(path):
    if module_of(path).startswith(("mtv_core.checkpoints", "mtv_core.tensorfile")):
        return
    bad = {name for name in imports_of(path) if name.split(".")[0] == "safetensors"}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}; load and save through mtv_core.checkpoints"


# tools/build_demo.py may: the demo's T5 and wav2vec2 are the tiny random encoders, on purpose.
@pytest.mark.parametrize("path", [path for path in PRODUCT if path.relative_to(ROOT).parts[0] != "tools"], ids=ids)
def test_no_product_code_imports_the_test_builders(path):
    bad = {name for name in imports_of(path) if name == "mtv_core.testing" or name.split(".")[0] in ("tests", "pytest")}
    if module_of(path) == "mtv_core.testing":
        bad.discard("pytest")
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", PRODUCT, ids=ids)
def test_every_product_file_is_at_most_400_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= 400, f"{path.relative_to(ROOT)} has {lines} lines; split it by concern"


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]+")


@pytest.mark.parametrize("path", LIBRARY, ids=ids)
def test_library_messages_name_no_command_line_flag(path):
    """A library message reads the same in a node, a script and the CLI: it may name a whole command to run
    (`python -m mtv_core convert --input ...`) but not a flag of the command the user happens to be in."""
    tree = ast.parse(path.read_text())
    flags = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings(tree):
            text = re.sub(r"(python|torchrun) [^`'\"]*", "", node.value)
            flags += [(node.lineno, flag) for flag in FLAG.findall(text)]
    assert not flags, f"{path.relative_to(ROOT)} names flags {flags}; say it in the library's terms, the CLI adds flags"


def docstrings(tree) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


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


# What a node may import when it runs rather than at the top: ComfyUI's own modules (absent outside ComfyUI) and the
# library modules that load diffusers or transformers (importing the pack must stay light).
LAZY_IN_NODES = ("comfy", "folder_paths", "server", "mtv_core.checkpoints", "mtv_core.pipeline.generate",
                 "mtv_core.pipeline.session", "mtv_core.pipeline.vae", "mtv_core.pipeline.speed")


@pytest.mark.parametrize("path", sorted((ROOT / "nodes").glob("*.py")), ids=ids)
def test_nodes_import_at_the_top_whatever_is_cheap(path):
    late = set()
    for function in ast.walk(ast.parse(path.read_text())):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            late |= {node.module if isinstance(node, ast.ImportFrom) else alias.name
                     for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom))
                     for alias in node.names}
    cheap = {name for name in late if not any(name == lazy or name.startswith(lazy + ".") for lazy in LAZY_IN_NODES)}
    assert not cheap, f"{path.relative_to(ROOT)} imports {sorted(cheap)} inside functions; import them at the top"


def test_importing_the_pack_loads_no_diffusers_transformers_or_demucs():
    code = "import sys, nodes; print(sorted({'diffusers', 'transformers', 'demucs'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
