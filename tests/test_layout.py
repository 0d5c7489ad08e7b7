"""The package layout (issue 22): no import circles and no upward imports in the code, files under methods/ import
no engine, CLI or other method, the registries import no method, a method's module imports first on its own, and
the old import paths forward with a DeprecationWarning."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _graph_tool():
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "tools" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _runtime_arrows():
    tool = _graph_tool()
    _, arrows, _ = tool.scan()
    return tool, {m: {t for t, k, _ in found if k != "typing"} for m, found in arrows.items()}


def test_no_circles_and_no_upward_imports():
    tool, graph = _runtime_arrows()
    assert tool.sccs(graph) == []
    up = [(m, t) for m, ts in graph.items() for t in ts
          if tool.layer_of(t) > tool.layer_of(m) and m not in tool.SHIMS]
    assert up == []


def test_methods_import_no_engine_cli_or_other_method():
    _, graph = _runtime_arrows()
    for mod, targets in graph.items():
        if not mod.startswith("aufer.methods.") or mod in ("aufer.methods",):
            continue
        own = ".".join(mod.split(".")[:3])  # aufer.methods.<name>
        for t in targets:
            assert not t.startswith(("aufer.engine", "aufer.cli", "aufer.predict", "aufer.demo")), (mod, t)
            assert not t.startswith("aufer.methods.") or t.startswith(own + ".") or t == own, (mod, t)


def test_registries_import_no_method():
    _, graph = _runtime_arrows()
    for reg in ("aufer.registry", "aufer.training.registry", "aufer.models._registry", "aufer.models._factory",
                "aufer.models.weights"):
        assert not any(t.startswith("aufer.methods") for t in graph[reg]), reg
    assert not any(t.startswith("aufer.models") for t in graph["aufer.models.weights"])  # weights: no registry


def test_the_plug_board_is_the_only_list_of_methods():
    """Only aufer/methods/__init__.py imports more than one method; the methods' folders all appear on it except
    the template."""
    _, graph = _runtime_arrows()
    folders = {p.name for p in (ROOT / "src" / "aufer" / "methods").iterdir() if p.is_dir() and p.name[0] != "_"
               and p.name != "__pycache__"}
    assert {t.split(".")[2] for t in graph["aufer.methods"] if t.count(".") >= 2} == folders
    for mod, targets in graph.items():
        if mod != "aufer.methods" and not mod.startswith("aufer.methods."):
            assert len({t.split(".")[2] for t in targets if t.startswith("aufer.methods.")}) <= 1 or \
                mod in ("aufer.models.ssm", "aufer.models.mdhr"), mod


@pytest.mark.slow
@pytest.mark.parametrize("module", ["aufer.methods.ssm.loss", "aufer.methods.mdhr.loss", "aufer.methods.au_dfer.loss",
                                    "aufer.methods.mal.step", "aufer.methods.mtl.uncertainty",
                                    "aufer.training.losses"])
def test_a_method_module_imports_first(module):
    """As its own test would: a fresh interpreter imports the module first, then finds every method by name."""
    code = (f"import {module}\nfrom aufer.training import LOSSES, STEPS\nfrom aufer.models import list_models\n"
            "assert {'ssm', 'mdhr', 'au_dfer', 'uncertainty', 'joint'} <= set(LOSSES) and 'mal' in STEPS\n"
            "assert list_models('mdhr') and list_models('ssm') and list_models('former_dfer')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("method", ["mdhr", "ssm"])
def test_old_official_import_paths_forward_with_a_warning(method):
    old = importlib.import_module(f"aufer.models.{method}")
    new = importlib.import_module(f"aufer.methods.{method}")
    with pytest.warns(DeprecationWarning, match=f"aufer.models.{method}.from_official_state_dict is deprecated"):
        fn = old.from_official_state_dict
    assert fn is new.from_official_state_dict
    with pytest.raises(AttributeError):
        old.no_such_name  # noqa: B018
