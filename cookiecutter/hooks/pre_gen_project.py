"""Refuse names that would make a broken plugin, before any file is written."""

import re
import sys

KIND = "{{ cookiecutter.kind }}"
PROJECT = "{{ cookiecutter.project_name }}"
PACKAGE = "{{ cookiecutter.package_name }}"
COMPONENT = "{{ cookiecutter.component_name }}"
CLASS = "{{ cookiecutter.class_name }}"

problems = []
if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", PROJECT):
    problems.append(f"project_name {PROJECT!r} is not a valid distribution name")
if not PACKAGE.isidentifier() or any(c.isupper() for c in PACKAGE):
    problems.append(f"package_name {PACKAGE!r} is not a lower-case Python identifier")
if not re.fullmatch(r"[a-z][a-z0-9_]*", COMPONENT):
    problems.append(
        f"component_name {COMPONENT!r} must start with a letter and hold only a-z, 0-9 and _"
    )
if not CLASS.isidentifier():
    problems.append(f"class_name {CLASS!r} is not a Python identifier")

# A plugin must not take a name an installed plugin already uses: tradeloom would refuse
# to start with two components of one kind under one name.
try:
    from tradeloom.plugins import COMPONENT_KINDS, PluginManager
except ImportError:
    pass
else:
    def _normal(name):
        return re.sub(r"[-_.]+", "-", str(name)).lower()

    def _ours(plugin):
        # This very project, installed (generated again over itself with --overwrite).
        info = manager.infos.get(plugin)
        return info is not None and _normal(info.distribution) == _normal(PROJECT)

    manager = PluginManager().load()
    if COMPONENT in manager.infos and not _ours(COMPONENT):
        problems.append(
            f"a plugin named {COMPONENT!r} is installed already (from "
            f"{manager.infos[COMPONENT].distribution or 'no distribution'})"
        )
    try:
        taken = manager.registrations()[KIND]
    except Exception:
        taken = {}
    if COMPONENT in taken and not _ours(taken[COMPONENT].plugin):
        problems.append(
            f"{KIND} {COMPONENT!r} is registered already by plugin {taken[COMPONENT].plugin!r}"
        )
    assert KIND in COMPONENT_KINDS

if problems:
    print("tradeloom new: " + "; ".join(problems) + ".", file=sys.stderr)
    print("Choose another plugin_name (or set the names with --option).", file=sys.stderr)
    sys.exit(1)
