"""The errors shared by the rewrite and the export."""


class UnsupportedLayerError(ValueError):
    """A layer cannot be quantized, or cannot be exported (bit-exactly); the message names it and the remedy.

    Attributes:
        problems: the export problems (``hgq_rewrite.proxy.hls4ml_limits.Problem``) behind the error;
            empty when the rewrite raised it (the message then lists the layers).
    """

    def __init__(self, message, problems=()):
        super().__init__(message)
        self.problems = list(problems)
