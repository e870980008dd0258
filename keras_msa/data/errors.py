"""Errors raised by the keras_msa data readers and writers."""


class DataFormatError(ValueError):
    """A data file or example does not have the expected layout.

    The message names where the problem is: ``"<path>: <key>: <message>"``
    (parts that are ``None`` are left out), so a user can find the file and
    the key at fault.

    Args:
        message: what is wrong (expected vs actual where it applies).
        path: the file or directory concerned, if any.
        key: the key, split or example id concerned, if any
            (for example ``"train/audio"`` or ``"train[3] id=abc/audio"``).
    """

    def __init__(self, message, path=None, key=None):
        self.problem = str(message)
        self.path = None if path is None else str(path)
        self.key = None if key is None else str(key)
        parts = [p for p in (self.path, self.key) if p]
        parts.append(self.problem)
        super().__init__(": ".join(parts))
