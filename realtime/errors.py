"""The one exception a frame handler raises to answer with an ``error`` frame."""

from .protocol import ErrorCode


class CommandError(Exception):
    """A client command refused: the consumer answers ``error {code, detail, ref}`` and the
    socket stays open (docs/protocol.md, "Errors and limits").

    ``code`` is the machine-readable reason also used over REST; ``frame_code`` is the
    :class:`~realtime.protocol.ErrorCode` the ``error`` frame carries, ``code`` unless a subclass
    says otherwise. ``fields`` are extra members of the frame (e.g. ``room``).
    """

    code: str = ErrorCode.INVALID_MESSAGE
    frame_code: str | None = None
    default_detail = "Invalid request."

    def __init__(self, detail: str | None = None, **fields: object) -> None:
        self.detail = detail or self.default_detail
        self.fields = fields
        super().__init__(self.detail)

    @property
    def error_code(self) -> str:
        """The ``code`` of the ``error`` frame."""
        return self.frame_code or self.code
