"""Pipeline config handling: load, --config_override merge, validate, save.

See config_util (OD API config_util role), validation and support (the one table of
parsed-but-unimplemented settings, mirrored in docs/config_support.md).
"""
from mtl_ssl.config.errors import ConfigError, UnsupportedConfigWarning

__all__ = ["ConfigError", "UnsupportedConfigWarning"]
