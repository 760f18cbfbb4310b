"""What the plugin registers, imported only when a redpanda transport or feed is built (the
registrations name it by reference), so the plugin is listed without the ``redpanda`` extra
and says what to install when it is used."""

from __future__ import annotations

from tradeloom.errors import PluginError

try:
    from tradeloom_redpanda.feed import RedpandaFeed
    from tradeloom_redpanda.transport import RedpandaTransport
except ModuleNotFoundError as exc:
    if exc.name != "aiokafka":
        raise
    raise PluginError(
        "the redpanda plugin needs aiokafka: pip install 'tradeloom[redpanda]'"
    ) from None

__all__ = ["RedpandaFeed", "RedpandaTransport"]
