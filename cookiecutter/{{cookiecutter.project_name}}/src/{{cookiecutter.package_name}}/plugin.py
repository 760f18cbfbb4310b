"""The plugin module named by the `tradeloom` entry point in pyproject.toml.

tradeloom calls the `@hookimpl` functions below when it assembles a pipeline; configuration
then picks the component by name, e.g. {% if cookiecutter.kind == "strategy" %}`[[strategies]] name = "{{ cookiecutter.component_name }}"`{% elif cookiecutter.kind == "validator" %}`[[validators]] name = "{{ cookiecutter.component_name }}"`{% else %}`[{{ cookiecutter.kind }}] name = "{{ cookiecutter.component_name }}"`{% endif %}.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tradeloom import hookimpl

from {{ cookiecutter.package_name }}.{{ cookiecutter.kind }} import {{ cookiecutter.class_name }}
{% if cookiecutter.kind == "strategy" %}

@hookimpl
def tradeloom_register_strategies() -> Mapping[str, Any]:
    return {"{{ cookiecutter.component_name }}": {{ cookiecutter.class_name }}}
{%- elif cookiecutter.kind == "feed" %}

@hookimpl
def tradeloom_register_feeds() -> Mapping[str, Any]:
    return {"{{ cookiecutter.component_name }}": {{ cookiecutter.class_name }}}
{%- elif cookiecutter.kind == "validator" %}

@hookimpl
def tradeloom_register_validators() -> Mapping[str, Any]:
    return {"{{ cookiecutter.component_name }}": {{ cookiecutter.class_name }}}
{%- elif cookiecutter.kind == "persistence" %}

@hookimpl
def tradeloom_register_persistence() -> Mapping[str, Any]:
    return {"{{ cookiecutter.component_name }}": {{ cookiecutter.class_name }}}
{%- else %}

@hookimpl
def tradeloom_register_executors() -> Mapping[str, Any]:
    return {"{{ cookiecutter.component_name }}": {{ cookiecutter.class_name }}}
{%- endif %}
