"""Generated protobuf modules (*_pb2.py) for the pipeline config.

The sources are ../../protos/*.proto; the modules are compiled at install time
(setup.py) and are not in git. If one is missing, importing it raises an ImportError
that says how to generate it instead of a bare "No module named ...".
"""
import importlib.abc
import os
import sys

_PACKAGE = __name__
_HERE = os.path.dirname(os.path.abspath(__file__))
_PROJECT_ROOT = os.path.dirname(os.path.dirname(_HERE))


def _missing_message(module_name):
    if os.path.isdir(os.path.join(_PROJECT_ROOT, "protos")):
        where = f"in the project root ({_PROJECT_ROOT})"
    else:
        where = "in the mtl-ssl project root (the folder with setup.py and protos/)"
    return (
        f"{module_name} has not been generated: the *_pb2.py modules of mtl_ssl.protos are "
        f"compiled from protos/*.proto when the package is installed. Run "
        f"`pip install -e .` (or, with grpcio-tools installed, `python setup.py build_py`) "
        f"{where}."
    )


class _MissingGeneratedProtoFinder(importlib.abc.MetaPathFinder):
    """Last finder on sys.meta_path: only reached when no real module was found."""

    def find_spec(self, fullname, path=None, target=None):
        prefix = _PACKAGE + "."
        if fullname.startswith(prefix) and fullname.endswith("_pb2"):
            # Plain ImportError (not ModuleNotFoundError) so that `from mtl_ssl.protos
            # import x_pb2` shows this message instead of "cannot import name".
            raise ImportError(_missing_message(fullname), name=fullname)
        return None


if not any(isinstance(f, _MissingGeneratedProtoFinder) for f in sys.meta_path):
    sys.meta_path.append(_MissingGeneratedProtoFinder())
