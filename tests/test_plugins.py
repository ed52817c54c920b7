"""Adding a method is adding a file: folders, entry points, duplicates, broken plugins."""
import os
import subprocess
import sys
import textwrap

import pytest

from bench import api, plugins
from conftest import REPO

EXAMPLE = textwrap.dedent('''
    """An example third-party method: forward dropout with a per-sequence recurrent mask."""
    from bench.api import MethodSpec, Noise
    from bench.plugins import register_method

    register_method(MethodSpec(
        name="{name}",
        paper="an example plugin",
        options=dict(p_io=0.3, p_rec=0.1),
        noise=lambda cfg: Noise(emb=cfg.p_io, hid=cfg.p_io, out=cfg.p_io, io_mask="locked",
                                rec=cfg.p_rec, rec_mask="sequence"),
    ))
''')


def test_duplicate_names_are_errors():
    plugins.load_all()
    spec = api.MethodSpec(name="zaremba", paper="x", noise=lambda cfg: api.Noise())
    with pytest.raises(ValueError, match="duplicate method name 'zaremba'"):
        plugins.register_method(spec)


def test_broken_plugin_is_reported_and_others_still_load(tmp_path):
    (tmp_path / "broken.py").write_text("import not_a_module_xyz\n")
    (tmp_path / "good_example.py").write_text(EXAMPLE.format(name="good_example"))
    plugins.load_directory(str(tmp_path))
    try:
        errors = plugins.import_errors()
        assert any("broken.py" in k and "not_a_module_xyz" in v for k, v in errors.items())
        assert "good_example" in plugins.list_methods() and "zaremba" in plugins.list_methods()
        with pytest.raises(Exception, match="method 'broken' failed to import: ModuleNotFoundError"):
            plugins.get_method("broken")
    finally:
        plugins.unregister("method", "good_example")
        plugins._IMPORT_ERRORS.pop(str(tmp_path / "broken.py"), None)


def test_example_plugin_from_a_folder_runs_end_to_end(tmp_path, tiny_lm):
    """The docs' walkthrough: one file in a folder on $BENCH_PLUGINS, then `bench run`."""
    folder = tmp_path / "myplugins"
    folder.mkdir()
    (folder / "my_dropout.py").write_text(EXAMPLE.format(name="my_dropout"))
    env = dict(os.environ, BENCH_PLUGINS=str(folder), BENCH_REGISTRY=str(tmp_path / "reg"),
               BENCH_REPORTS=str(tmp_path / "rep"))
    # through the CLI on PTB when the mirror is there; always in-process on the generated corpus
    from conftest import HAVE_MIRROR
    if HAVE_MIRROR:
        p = subprocess.run([sys.executable, "-m", "bench", "run", "--task", "ptb", "--method", "my_dropout",
                            "--device", "cpu", "--set", "epochs=1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert "ptb.my_dropout.smoke.s0.cpu" in p.stdout
        assert list((tmp_path / "reg" / "ptb" / "my_dropout").glob("*.parquet"))
        listing = subprocess.run([sys.executable, "-m", "bench", "list"], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=300).stdout
        assert "my_dropout" in listing and "an example plugin" in listing
    plugins.load_directory(str(folder))
    try:
        from bench import runner
        row = runner.run(tiny_lm[0].name, "my_dropout", "smoke", device="cpu", registry=tmp_path / "reg2",
                         runs_dir=tmp_path / "runs", data_dir=tiny_lm[1], progress=False).row
        assert row["git_dirty"]                  # an out-of-tree plugin is not in any commit
        assert row["status"] == "ok" and row["rnn_path"] != "fused"
    finally:
        plugins.unregister("method", "my_dropout")


def test_entry_point_group_registers_third_party_methods(tmp_path, monkeypatch):
    """A pip-installed package exposing `rnn_dropout_bench.methods` is picked up."""
    pkg = tmp_path / "site"
    (pkg / "ep_pkg").mkdir(parents=True)
    (pkg / "ep_pkg" / "__init__.py").write_text(EXAMPLE.format(name="ep_method"))
    dist = pkg / "ep_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[rnn_dropout_bench.methods]\nep_method = ep_pkg\n")
    monkeypatch.syspath_prepend(str(pkg))
    plugins.load_entry_points()
    try:
        assert "ep_method" in plugins.list_methods()
        assert plugins.get_method("ep_method").paper == "an example plugin"
    finally:
        plugins.unregister("method", "ep_method")


def docs_example(section: str) -> str:
    """The first ```python block of `section` in docs/adding-a-method.md."""
    text = (REPO / "docs" / "adding-a-method.md").read_text()
    body = text.split(f"\n## {section}")[1].split("\n## ")[0]
    return body.split("```python\n")[1].split("```")[0]


def test_new_mask_position_plugin_from_a_folder_runs_end_to_end(tmp_path, tiny_lm, monkeypatch):
    """docs/adding-a-method.md section 6, as written there: a method with a NEW mask position (the
    LSTM's output gate), one file in a folder on $BENCH_PLUGINS, no trainer, task or cell edits.
    It runs (on the reference LSTM cell: the fast one does not apply slot o), the mask is where the
    position says, and a GRU run is refused (exit 2)."""
    from bench import positions
    from conftest import HAVE_MIRROR
    code = docs_example("6. A method with a new mask position")
    assert 'register_position(Position(\n    "out_gate"' in code and 'name="out_gate_drop"' in code
    folder = tmp_path / "myplugins"
    folder.mkdir()
    (folder / "out_gate_drop.py").write_text(code)
    env = dict(os.environ, BENCH_PLUGINS=str(folder), BENCH_REGISTRY=str(tmp_path / "reg"),
               BENCH_REPORTS=str(tmp_path / "rep"), BENCH_RUNS=str(tmp_path / "runs"))
    if HAVE_MIRROR:
        base = [sys.executable, "-m", "bench", "run", "--task", "ptb", "--method", "out_gate_drop", "--device", "cpu",
                "--set", "epochs=1"]
        p = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        assert "fast LSTM cell not used (a mask at slot(s) o" in p.stderr       # said once, not silent
        [row] = (tmp_path / "reg" / "ptb" / "out_gate_drop").glob("*.parquet")
        p = subprocess.run(base + ["--set", "cell=gru"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 2 and "position 'out_gate'" in p.stderr and "use cell=lstm" in p.stderr
        listing = subprocess.run([sys.executable, "-m", "bench", "list"], cwd=REPO, env=env,
                                 capture_output=True, text=True, timeout=300).stdout
        assert "out_gate_drop" in listing and "out_gate        [lstm]" in listing
    from bench import fastcell
    monkeypatch.setattr(fastcell, "_NOTICED", set())                # the one-time warning, in this process
    plugins.load_directory(str(folder))
    try:
        import torch
        import torch.nn.functional as F

        from bench import runner
        from bench.api import Noise
        from bench.rnn import LSTMLayer, lstm_cell_loop, recurrent_mask
        with pytest.warns(UserWarning, match="slot\\(s\\) o"):
            row = runner.run(tiny_lm[0].name, "out_gate_drop", "smoke", device="cpu", registry=tmp_path / "reg2",
                             runs_dir=tmp_path / "runs2", data_dir=tiny_lm[1], progress=False).row
        assert row["status"] == "ok" and row["rnn_path"] == "cell"
        # the mask multiplies o_t, one (B,H) mask per chunk: the layer equals the reference with it
        T, B, IN, H = 5, 3, 4, 6
        torch.manual_seed(1)
        layer = LSTMLayer(IN, H)
        x, state = torch.randn(T, B, IN), (torch.randn(B, H), torch.randn(B, H))
        torch.manual_seed(2)
        out, _ = layer(x, state, Noise(extra={"out_gate": 0.5}), 0.0, True)
        torch.manual_seed(2)
        m = recurrent_mask(0.5, "sequence", T, B, H, x)
        ref, _ = lstm_cell_loop(F.linear(x, layer.weight_ih, layer.bias_ih), *state, layer.weight_hh,
                                layer.bias_hh, slots={"o": m})
        assert m.shape == (1, B, H) and torch.allclose(out, ref, atol=1e-6)
        assert (out[:, m[0] == 0] == 0).all()              # a dropped output gate: h = 0 at every step
        with pytest.raises(Exception, match="a gru cell cannot apply it"):
            runner.run(tiny_lm[0].name, "out_gate_drop", "smoke", device="cpu", registry=tmp_path / "reg2",
                       runs_dir=tmp_path / "runs2", data_dir=tiny_lm[1], progress=False, overrides={"cell": "gru"})
    finally:
        plugins.unregister("method", "out_gate_drop")
        positions.unregister_position("out_gate")
