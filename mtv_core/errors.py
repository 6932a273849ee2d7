"""One small exception hierarchy. Every message says what was wrong, the value, and what to do."""


class MTVError(Exception):
    """Base class for every error the library raises on purpose."""


class ConfigError(MTVError, ValueError):
    """A configuration or option value that cannot work."""


class ModelFileError(MTVError):
    """A model file that is missing, unreadable, truncated or of the wrong kind."""


class AudioInputError(MTVError, ValueError):
    """Audio that cannot be decoded or used as given."""


class GenerationError(MTVError):
    """A generation request that cannot run as given."""
