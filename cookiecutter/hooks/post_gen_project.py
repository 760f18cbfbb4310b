"""Keep only the files of the chosen kind of plugin."""

from pathlib import Path

KIND = "{{ cookiecutter.kind }}"
PACKAGE = Path("src") / "{{ cookiecutter.package_name }}"

MODULES = {
    "strategy": "strategy.py",
    "feed": "feed.py",
    "executor": "executor.py",
    "validator": "validator.py",
    "persistence": "persistence.py",
}
DATA = {
    "strategy": "sample.csv",
    "feed": "sample.jsonl",
    "executor": "sample.csv",
    "validator": "sample.csv",
    "persistence": "sample.csv",
}

for kind, module in MODULES.items():
    if kind != KIND:
        (PACKAGE / module).unlink()
        (Path("tests") / f"test_{module}").unlink()
for name in set(DATA.values()) - {DATA[KIND]}:
    (Path("data") / name).unlink()
