"""The compiled inline path of the capture reader (ikeflow/sources/inline.c): built when a C compiler and
Python's headers are there; without them the install goes on and the reader's Python loop does its work
(the same output, about half the speed: README, "Speed and memory")."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ikeflow.sources.inline", ["ikeflow/sources/inline.c"], optional=True,
                             extra_compile_args=["-O2", "-ffp-contract=off"])])
