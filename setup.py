"""Build zoo and its C++/CUDA extension ``zoo._C``.

* CppExtension by default (CPU kernels, OpenMP).
* CUDAExtension when ``torch.cuda.is_available()`` and nvcc is found, or when
  ``ZOO_FORCE_CUDA=1`` (then ``TORCH_CUDA_ARCH_LIST`` defaults to ``8.0;9.0+PTX``).
* With no sources under ``csrc/`` the package installs without an extension and
  ``zoo.ops`` uses its pure-torch fallbacks.
* ``ZOO_SANITIZE=1``: a debug build of the CPU kernels under AddressSanitizer and
  UndefinedBehaviorSanitizer (``-fsanitize=address,undefined -fno-sanitize-recover=all
  -fno-wrapv -fno-omit-frame-pointer -g -O1``, no CUDA), for ``make asan``, which builds it outside the package (``build/asan``) and loads
  it through ``ZOO_EXT_PATH`` (docs/BUILD.md, "Fuzzing and sanitizers").

Install with ``pip install --no-build-isolation -e .`` (torch must already be there).
"""
from __future__ import annotations

import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))


def _nvidia_include_dirs() -> list[str]:
    """CUDA headers that torch's CUDA wheels keep under site-packages/nvidia/*/include."""
    dirs: list[str] = []
    for base in sys.path:
        nv = os.path.join(base, "nvidia")
        if os.path.isdir(nv):
            dirs += sorted(d for d in glob.glob(os.path.join(nv, "*", "include")) if os.path.isdir(d))
    return dirs


def _guess_cuda_home() -> None:
    """Point torch at a real CUDA toolkit before it guesses one.

    torch derives CUDA_HOME from ``which nvcc``; a wrapper script such as
    /usr/local/bin/nvcc makes that /usr/local, where libcudart is not. Prefer an
    explicit CUDA_HOME / CUDA_PATH, then /usr/local/cuda.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    if os.path.isfile("/usr/local/cuda/bin/nvcc"):
        os.environ["CUDA_HOME"] = "/usr/local/cuda"


def _extensions():
    cpp = _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp")
    cu = _sources("csrc/cuda/*.cu")
    if not cpp:
        return [], {}

    _guess_cuda_home()
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    force = os.environ.get("ZOO_FORCE_CUDA", "0") == "1"
    sanitize = os.environ.get("ZOO_SANITIZE", "0") == "1"
    with_cuda = bool(cu) and not sanitize and (force or (torch.cuda.is_available() and CUDA_HOME is not None))
    openmp = ["-fopenmp"] if sys.platform.startswith("linux") else []
    # torch's cpp_extension picks the C++ standard its headers need. No FP contraction: IoU and
    # box arithmetic must round exactly like the reference (and torchvision) to make the same decisions.
    # -fno-trapping-math (no FP-exception traps; results unchanged) lets selects in loops vectorise.
    cxx_flags = ["-O3", "-ffp-contract=off", "-fno-trapping-math", *openmp]
    link_flags = list(openmp)
    if sanitize:
        # ASan + UBSan, stopping at the first report (-fno-sanitize-recover: a UBSan finding aborts
        # instead of printing and going on); -O1 -g keeps the stack traces readable. -fno-wrapv
        # undoes the -fwrapv of Python's CFLAGS, under which signed overflow is defined and UBSan
        # does not check it (a wrapped size or index is a bug all the same).
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
        cxx_flags = [*san, "-fno-wrapv", "-fno-omit-frame-pointer", "-g", "-O1", "-ffp-contract=off",
                     "-fno-trapping-math", *openmp]
        link_flags = [*san, *openmp]
    define_macros = []
    if with_cuda:
        if CUDA_HOME is None:
            raise RuntimeError("ZOO_FORCE_CUDA=1 but no CUDA toolkit (nvcc) was found; set CUDA_HOME")
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
        define_macros.append(("ZOO_WITH_CUDA", None))
        ext = CUDAExtension(
            "zoo._C",
            cpp + cu,
            include_dirs=_nvidia_include_dirs(),
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "--fmad=false"]},
            extra_link_args=link_flags,
        )
    else:
        ext = CppExtension(
            "zoo._C",
            cpp,
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags},
            extra_link_args=link_flags,
        )
    return [ext], {"build_ext": BuildExtension.with_options(no_python_abi_suffix=True)}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)
