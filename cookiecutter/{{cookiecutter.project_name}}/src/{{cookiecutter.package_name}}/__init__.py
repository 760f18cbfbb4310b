"""{{ cookiecutter.description }}"""

from {{ cookiecutter.package_name }}.{{ cookiecutter.kind }} import {{ cookiecutter.class_name }}

__all__ = ["{{ cookiecutter.class_name }}"]
__version__ = "{{ cookiecutter.version }}"
