"""Build the sparse kernels (plain C, loaded with ctypes); all other metadata is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds, and
``prunekit.sparse.deploy`` logs a warning and keeps every layer dense.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "prunekit.sparse._csr_kernels",
            sources=["src/prunekit/sparse/csrc/csr_kernels.c"],
            # the per-instruction-set body, included once per kernel path
            depends=[
                "src/prunekit/sparse/csrc/spmm_body.h",
                "src/prunekit/sparse/csrc/spmm_path.h",
            ],
            extra_compile_args=["-O3", "-std=gnu11", "-fvisibility=default"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    ]
)
