"""The CPU kernel sets (``ATEN_CPU_CAPABILITY`` values) to rerun the numerical tests under.

``python -m tests.kernels`` prints those torch can run on this CPU other than its native one
(which ``make test`` already runs): on x86-64, the portable ``default`` kernels and every vector
width below the native one (AVX2 below AVX512). ``make test-kernels`` loops over them.
"""

from __future__ import annotations

#: the x86-64 kernel sets, narrowest first; torch picks the widest the CPU has
X86 = ("default", "avx2", "avx512")


def other_capabilities(native: str) -> list[str]:
    """The kernel sets to rerun under, given torch's native one (case-insensitive)."""
    native = native.lower()
    if native in X86:
        return list(X86[: X86.index(native)])
    return [] if native == "default" else ["default"]


if __name__ == "__main__":
    import torch

    print(" ".join(other_capabilities(torch.backends.cpu.get_cpu_capability())))
