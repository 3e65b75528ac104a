"""Error and warning types for pipeline configs."""


class ConfigError(ValueError):
    """A pipeline config that cannot be used: bad syntax, bad value or unsupported setting.

    `source` is the file (or '--config_override'), `line`/`column` are 1-based when the
    error comes from the text parser, `field` is the dotted field path when known.
    """

    def __init__(self, message, *, source=None, line=None, column=None, field=None):
        self.source = source
        self.line = line
        self.column = column
        self.field = field
        self.detail = message
        self.problems = [message]
        location = ""
        if source is not None:
            location = str(source)
            if line is not None:
                location += f":{line}"
                if column is not None:
                    location += f":{column}"
            location += ": "
        super().__init__(location + message)


class UnsupportedConfigWarning(UserWarning):
    """A setting that parses but that mtl-ssl ignores or replaces (see docs/config_support.md)."""


class ConfigAdviceWarning(UserWarning):
    """A setting that runs but is likely wrong for this model or data; the message says what to
    change (e.g. detection caps below the objects per image, anchors that miss the objects)."""
