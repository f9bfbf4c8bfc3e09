"""The two Struct bases every contract derives from."""

import msgspec


class ApiBody(msgspec.Struct, kw_only=True, omit_defaults=False):
    """An HTTP request or response body.

    Unknown fields are ignored (msgspec's default), so clients may send extras.
    """


class StreamMessage(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A message on a JetStream stream.

    Never forbids unknown fields: an older worker must decode a newer message during replay.
    """
