"""The README stays true: its config reference is the one the models generate."""

from tools.config_reference import readme_with_table
from tools.offline import ROOT


def test_config_reference_in_readme_matches_the_models():
    readme = (ROOT / "README.md").read_text()
    assert readme == readme_with_table(readme), "run: .venv/bin/python -m tools.config_reference --write"


def test_readme_names_the_two_setup_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make render" in readme and "make test" in readme
