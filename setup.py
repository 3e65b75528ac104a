"""Build script: compiles protos/*.proto into mtl_ssl/protos/*_pb2.py at install time.

The generated modules are not checked in. `pip install .`, `pip install -e .` (PEP 660)
and `python setup.py build_py` all run the custom build_py below, which writes the
*_pb2.py files next to mtl_ssl/protos/__init__.py before the normal build step copies
the package (in editable mode the source tree itself is what gets imported).
"""
import glob
import os

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
PROTO_SRC = os.path.join(ROOT, "protos")
PROTO_OUT_PACKAGE = os.path.join(ROOT, "mtl_ssl", "protos")


def compile_protos():
    """Run protoc (from grpcio-tools) on every protos/*.proto.

    `-Imtl_ssl/protos=<ROOT>/protos` makes protoc see each file as
    mtl_ssl/protos/x.proto, so the generated code imports `from mtl_ssl.protos import
    x_pb2` and lands in <ROOT>/mtl_ssl/protos/.
    """
    try:
        from grpc_tools import protoc
    except ImportError as error:  # only without build isolation and without grpcio-tools
        raise RuntimeError(
            "compiling protos/*.proto needs grpcio-tools: pip install 'grpcio-tools==1.85.*'"
        ) from error
    import importlib.resources

    proto_files = sorted(glob.glob(os.path.join(PROTO_SRC, "*.proto")))
    if not proto_files:
        raise RuntimeError(f"no .proto files found in {PROTO_SRC}")
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-Imtl_ssl/protos={PROTO_SRC}",
        f"-I{well_known}",
        f"--python_out={ROOT}",
    ] + proto_files
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on protos/*.proto (see the messages above)")
    expected = [
        os.path.join(PROTO_OUT_PACKAGE, os.path.basename(p)[: -len(".proto")] + "_pb2.py")
        for p in proto_files
    ]
    missing = [path for path in expected if not os.path.exists(path)]
    if missing:
        raise RuntimeError(f"protoc did not write {missing}")


class BuildPyWithProtos(_build_py):
    """build_py that first generates the protobuf modules."""

    def run(self):
        compile_protos()
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
