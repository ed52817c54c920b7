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
                            "--device", "cpu"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
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
