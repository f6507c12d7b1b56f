"""Builds the compiled core of the boot path (hotpath/_*.pyx).

There is no silent fallback: if Cython or a C compiler is missing the build
fails, because a boot path that quietly runs as slow Python is a bug that
only shows during a boot storm.  CHAMICORE_CYTHON_ANNOTATE=1 writes the
annotated HTML next to each .pyx; CHAMICORE_CYTHON_TRACE=1 turns on line
tracing for profilers and coverage.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

try:
    from Cython.Build import cythonize
except ImportError:  # pragma: no cover - a build requirement in pyproject.toml
    sys.exit("chamicore: Cython >= 3.0 is required to build hotpath/ (pip install 'Cython>=3,<4')")

HOTPATH_MODULES = ["_render", "_dispatch", "_activity"]

trace = os.environ.get("CHAMICORE_CYTHON_TRACE") == "1"
macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if trace else []

extensions = [
    Extension(f"hotpath.{name}", [f"hotpath/{name}.pyx"], define_macros=macros, extra_compile_args=["-O2"])
    for name in HOTPATH_MODULES
]


class StrictBuildExt(build_ext):
    """build_ext that turns any compiler failure into a loud, named error."""

    def run(self):
        try:
            super().run()
        except Exception as exc:
            raise SystemExit(
                f"chamicore: building the compiled boot path failed ({exc}).\n"
                "Install a C compiler and the Python headers (Debian: apt-get install -y gcc python3-dev)."
            ) from exc

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            raise SystemExit(f"chamicore: compiling {ext.name} failed: {exc}") from exc


setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        annotate=os.environ.get("CHAMICORE_CYTHON_ANNOTATE") == "1",
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "linetrace": trace,
            "binding": trace,
        },
    ),
    cmdclass={"build_ext": StrictBuildExt},
)
