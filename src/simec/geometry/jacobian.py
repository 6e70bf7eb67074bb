"""Jacobians of a model's output with respect to its (explored) input, by torch.func.

Two paths compute the same J:

eager     ``vjp`` once (one forward pass), then ``vmap`` of the pullback over the rows of the
          identity (one batched backward pass). The default.
compiled  (``compile=True`` or the environment variable ``SIMEC_COMPILE=1``) the same computation
          traced once per function and input shape with ``make_fx`` into one graph of aten ops
          (scaled-dot-product attention decomposed into matmuls so that it batches) and compiled
          with TorchInductor. On the paper's MNIST ViT on a 2-core CPU this halves the Jacobian
          (~29 -> ~15 ms) after a one-off compile of a few seconds (10-40 s on a cold cache).
          Everything ``fn`` reads besides ``x`` (weights, token ids, the fixed rows) is frozen at
          the first call, and so is any Python branch on tensor values: the first result is
          checked against the eager path, and any failure (tracing, compiling, a mismatch) falls
          back to eager for that function for good.

Memory: ``max_memory`` (bytes) caps what the Jacobian is expected to need. The estimate, made
with one extra forward pass under autograd (``activation_bytes``): the activations the forward
pass saves for the backward pass (A bytes, the model's weights not counted), the Jacobian itself
(q rows of R = n x itemsize bytes, held twice while its chunks are joined), and per row pulled
back at once one more copy of the activations and of a row (A + R). The chunk size is the most
rows whose estimate fits: (budget - A - 2 q R) // (A + R); a batch (``batched_jacobian``) is
also split so that each part fits. A budget below what one row needs is an InputError. It is an
estimate of the tensors the computation holds, not a measurement of the process's memory.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import re
import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Literal, overload

import torch
from torch import Tensor
from torch.func import vjp, vmap
from torch.utils import _pytree as pytree

from ..errors import InputError

__all__ = [
    "activation_bytes",
    "batched_jacobian",
    "compile_from_environment",
    "jacobian",
    "math_attention",
    "memory_chunks",
    "parse_memory",
    "vmapped_attention",
]

#: relative Frobenius difference between the compiled and eager Jacobians accepted on first use
_CHECK_RTOL = {torch.float32: 1e-4, torch.float64: 1e-9}
_FAILED = object()
# fn (or the object a bound method belongs to) -> {(method, shape, dtype, device, ...): compiled}
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_WARNED: set[str] = set()


def compile_from_environment() -> bool | None:
    """The environment variable SIMEC_COMPILE: True ("1"/"true"/"yes"/"on"), False
    ("0"/"false"/"no"/"off"), None when unset or anything else. The one place it is read."""
    env = os.environ.get("SIMEC_COMPILE", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    return None


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BINARY = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_memory(value: Any) -> int | None:
    """A memory size -> bytes: an integer (bytes) or text such as '2GB', '512MB', '1.5GiB'
    (kB/MB/GB/TB powers of 1000, KiB/MiB/GiB/TiB powers of 1024, 'B' optional); None or
    'none'/'off' -> None. ValueError with the reason otherwise (the command line's type)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"expected a memory size such as 2GB or 512MiB, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, scale = float(value), 1
    else:
        text = str(value).strip().lower().replace(" ", "")
        if text in ("none", "off"):
            return None
        match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)([kmgt]i?)?b?", text)
        if match is None:
            raise ValueError(f"expected a memory size such as 2GB or 512MiB, got {value!r}")
        unit = match.group(2) or ""
        number, scale = float(match.group(1)), _BINARY.get(unit, _UNITS.get(unit, 1))
    if not math.isfinite(number) or number * scale < 1:
        raise ValueError(f"a memory size must be at least one byte, got {value!r}")
    return int(number * scale)


def activation_bytes(fn: Callable[..., Any], *inputs: Any) -> tuple[int, int]:
    """(bytes, q): the bytes of the tensors one forward pass of ``fn(x, *rest)`` saves for its
    backward pass with respect to x (each storage once; leaves such as the model's weights not
    counted): one
    extra forward pass under autograd, outside torch.func; q the length of its output (the
    first element of a tuple output)."""
    seen: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        base = t._base if t._base is not None else t
        if base.grad_fn is not None:  # computed from x (weights and constants are leaves)
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    x = inputs[0].detach().clone().requires_grad_(True)
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(x, *inputs[1:])
    y = out[0] if isinstance(out, tuple) else out
    q = int(y.shape[-1]) if isinstance(y, Tensor) and y.ndim >= 1 else 1
    del out, y
    return int(sum(seen.values())), q


def _budget_rows(
    fn: Callable[..., Any],
    inputs: tuple[Any, ...],
    budget: int,
    chunk_size: int | None,
    batch: int = 1,
) -> tuple[int, int]:
    """(items per part of the batch, rows per chunk) for ``max_memory``; ``inputs`` one item's."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise InputError(f"max_memory must be a positive number of bytes, got {budget!r}")
    x = inputs[0]
    activations, q = activation_bytes(fn, *inputs)
    items, rows = memory_chunks(budget, activations, q, x.numel() * x.element_size(), batch)
    return items, rows if chunk_size is None else min(rows, chunk_size)


def memory_chunks(
    budget: int, activations: int, q: int, row_bytes: int, batch: int = 1
) -> tuple[int, int]:
    """(items per part of a batch, rows per chunk) whose estimated memory fits ``budget``
    (bytes; see the module docstring): per item, activations A and the Jacobian 2 q R fixed,
    A + R per row pulled back at once. InputError (one line) when one row of one item does not
    fit."""
    fixed, per_row = activations + 2 * q * row_bytes, activations + row_bytes
    items = min(batch, budget // (fixed + per_row))
    if items < 1:
        raise InputError(
            f"max_memory {_size(budget)} is below the ~{_size(fixed + per_row)} one Jacobian "
            f"needs here ({q} rows of {_size(row_bytes)}, ~{_size(activations)} of "
            "activations); raise it or leave it unset"
        )
    rows = max(1, min(q, (budget // items - fixed) // per_row))
    return int(items), int(rows)


def _size(n: int) -> str:
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


@contextlib.contextmanager
def quiet_vmap() -> Iterator[None]:
    """Silence torch's 'no batching rule ... performance drop' warning (the fallback is exact)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(batching rule|performance drop).*")
        yield


def _eager(
    fn: Callable[[Tensor], Any], x: Tensor, chunk_size: int | None, has_aux: bool
) -> tuple[Any, ...]:
    out: tuple[Any, ...] = vjp(fn, x, has_aux=has_aux)
    y, pullback = out[0], out[1]
    aux = out[2] if has_aux else None
    if not isinstance(y, Tensor) or y.ndim != 1:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise InputError(f"the model output must be a vector (q,), got shape {shape}")
    q = y.shape[0]
    basis = torch.eye(q, dtype=y.dtype, device=y.device)
    step = q if chunk_size is None else chunk_size
    with quiet_vmap():
        rows = [vmap(pullback)(basis[i : i + step])[0] for i in range(0, q, step)]
    jac = rows[0] if len(rows) == 1 else torch.cat(rows)
    return (y, jac, aux) if has_aux else (y, jac)


def math_attention() -> contextlib.AbstractContextManager:
    """Force the math SDPA kernel: it decomposes into matmuls + softmax, which vmap batches."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([SDPBackend.MATH])
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - old torch
        return contextlib.nullcontext()


def vmapped_attention(x: Tensor) -> contextlib.AbstractContextManager:
    """The attention kernel for a vmapped batch on ``x``'s device: the math SDPA kernel on CUDA,
    whose memory-efficient kernel's backward refuses a vmapped batch ("LSE is not correctly
    aligned", seen on an H200 with torch 2.11); the default kernel elsewhere."""
    return math_attention() if x.is_cuda else contextlib.nullcontext()


_math_attention = math_attention


def _trace_and_compile(full: Callable[..., Any], inputs: tuple[Any, ...]) -> Callable[..., Any]:
    from torch.fx.experimental.proxy_tensor import make_fx

    with torch.no_grad(), _math_attention(), quiet_vmap():
        graph = make_fx(full, tracing_mode="real")(*inputs)
    return torch.compile(graph, dynamic=False, fullgraph=True)


def _cache_slot(fn: Callable) -> tuple[Any, Any]:
    """(weakly referenceable owner, sub-key): bound methods are new objects at every access."""
    if inspect.ismethod(fn):
        return fn.__self__, fn.__func__
    return fn, None


def _signature(value: Any) -> Any:
    """Shapes, dtypes, devices and strides of the tensors of a pytree (a compiled graph's key)."""
    if isinstance(value, Tensor):
        return (tuple(value.shape), value.dtype, value.device, value.stride())
    if isinstance(value, dict):
        return tuple(
            (k, _signature(v)) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
        )
    if isinstance(value, (list, tuple)):
        return tuple(_signature(v) for v in value)
    return value


def _compiled_call(
    fn: Callable, key: tuple, eager: Callable[..., tuple[Any, ...]], inputs: tuple[Any, ...]
) -> tuple[Any, ...] | None:
    """``eager(*inputs)`` (a Jacobian computation) by its compiled trace, made at the first call
    for ``fn`` and ``key`` and checked then against ``eager``; None when it cannot be compiled
    (eager then, for good, with one warning per distinct reason)."""
    owner, sub = _cache_slot(fn)
    try:
        table = _CACHE.setdefault(owner, {})
    except TypeError:  # not weakly referenceable: never cache (a compile per call would be worse)
        return None
    key = (sub, *key)
    compiled = table.get(key)
    if compiled is _FAILED:
        return None
    if compiled is not None:
        return compiled(*inputs)
    x = inputs[0]
    try:
        compiled = _trace_and_compile(eager, inputs)
        out = compiled(*inputs)
        ref = eager(*inputs)
        rtol = _CHECK_RTOL.get(x.dtype, 1e-4)
        for a, b in zip(out[:2], ref[:2]):
            scale = float(torch.linalg.vector_norm(b)) or 1.0
            if a.shape != b.shape or float(torch.linalg.vector_norm(a - b)) > rtol * scale:
                raise RuntimeError("compiled Jacobian differs from the eager one")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means: use the eager path
        table[key] = _FAILED
        reason = f"{type(exc).__name__}: {str(exc)[:200]}"
        if reason not in _WARNED:  # once per distinct reason, not once per explore run
            _WARNED.add(reason)
            warnings.warn(
                f"simec: compiled Jacobian unavailable for this model ({reason}); using the "
                "eager path",
                RuntimeWarning,
                stacklevel=4,
            )
        return None
    table[key] = compiled
    return ref  # the first call answers with the eager result it was checked against


def _compiled_jacobian(
    fn: Callable[[Tensor], Any], x: Tensor, chunk_size: int | None, has_aux: bool
) -> tuple[Tensor, ...] | None:
    """The compiled result, or None when this function cannot be compiled (eager then)."""

    def full(z: Tensor) -> tuple[Any, ...]:
        return _eager(fn, z, chunk_size, has_aux)

    key = (tuple(x.shape), x.dtype, x.device, x.stride(), chunk_size, has_aux)
    return _compiled_call(fn, key, full, (x,))


@overload
def jacobian(
    fn: Callable[[Tensor], Any],
    x: Tensor,
    *,
    chunk_size: int | None = ...,
    has_aux: Literal[False] = ...,
    compile: bool | None = ...,
    max_memory: int | None = ...,
) -> tuple[Tensor, Tensor]: ...
@overload
def jacobian(
    fn: Callable[[Tensor], Any],
    x: Tensor,
    *,
    chunk_size: int | None = ...,
    has_aux: Literal[True],
    compile: bool | None = ...,
    max_memory: int | None = ...,
) -> tuple[Tensor, Tensor, Any]: ...
def jacobian(
    fn: Callable[[Tensor], Any],
    x: Tensor,
    *,
    chunk_size: int | None = None,
    has_aux: bool = False,
    compile: bool | None = None,
    max_memory: int | None = None,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Any]:
    """Return ``(y, J)`` (and ``aux`` if ``has_aux``) for ``y = fn(x)`` with y of shape (q,).

    J has shape (q, *x.shape). It is built from q vector-Jacobian products vmapped over the
    rows of the identity: one forward pass and one batched backward pass. ``chunk_size`` caps
    how many rows are pulled back at once (memory ~ chunk_size backward passes); ``None`` does
    them all together.

    ``compile``: trace and compile the whole computation with TorchInductor on the first call
    for this ``fn`` and input shape, and reuse it afterwards (see the module docstring: ``fn``
    must be a pure function of ``x``; it falls back to eager on any failure). ``None`` reads the
    environment variable ``SIMEC_COMPILE`` ("1" enables).

    ``max_memory`` (bytes): pull back at most as many rows at once as the memory estimate of
    the module docstring allows (and at most ``chunk_size``); the same J.

    Runs under ``torch.no_grad()``: torch.func still differentiates with respect to ``x``, but no
    graph is recorded for the model's parameters.
    """
    if chunk_size is not None and chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size}")
    if compile is None:
        compile = compile_from_environment() is True
    if max_memory is not None:
        chunk_size = _budget_rows(fn, (x,), max_memory, chunk_size)[1]
    with torch.no_grad():
        out = _compiled_jacobian(fn, x, chunk_size, has_aux) if compile else None
        if out is None:
            out = _eager(fn, x, chunk_size, has_aux)
    return out  # type: ignore[return-value]


@overload
def batched_jacobian(
    fn: Callable[..., Any],
    xs: Tensor,
    *args: Any,
    chunk_size: int | None = ...,
    has_aux: Literal[False] = ...,
    compile: bool = ...,
    max_memory: int | None = ...,
) -> tuple[Tensor, Tensor]: ...
@overload
def batched_jacobian(
    fn: Callable[..., Any],
    xs: Tensor,
    *args: Any,
    chunk_size: int | None = ...,
    has_aux: Literal[True],
    compile: bool = ...,
    max_memory: int | None = ...,
) -> tuple[Tensor, Tensor, Any]: ...
def batched_jacobian(
    fn: Callable[..., Any],
    xs: Tensor,
    *args: Any,
    chunk_size: int | None = None,
    has_aux: bool = False,
    compile: bool = False,
    max_memory: int | None = None,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Any]:
    """Jacobians of B independent problems at once: ``y_b = fn(xs[b], *(a[b] for a in args))``.

    ``fn`` maps one input (and its share of ``args``, pytrees of tensors batched along dim 0) to
    a vector (q,) (and ``aux`` if ``has_aux``). Returns ``(Y, J)`` (and ``aux``) with Y (B, q) and
    J (B, q, *xs.shape[1:]), J[b] the Jacobian of problem b, equal to ``jacobian`` on it alone.

    One forward pass of the batch (``vmap(fn)``), then q backward passes of the batch: because
    the B problems do not interact, pulling back the cotangent e_i for every problem at once
    gives row i of all B Jacobians. The q pullbacks are vmapped like in ``jacobian`` (``chunk_size``
    rows at a time).

    ``compile``: the same computation traced (``xs`` and ``args`` its inputs, so one graph
    serves every batch of the same shapes) and compiled on the first call for ``fn`` and these
    shapes, as ``jacobian`` does; eager on any failure.

    ``max_memory`` (bytes): rows per chunk and items per part of the batch from the memory
    estimate of the module docstring (made on the first item); the parts are computed one
    after the other (eagerly when there is more than one) and joined: the same Y and J.
    """
    if chunk_size is not None and chunk_size < 1:
        raise InputError(f"chunk_size must be a positive integer, got {chunk_size}")
    count = int(xs.shape[0])
    if max_memory is not None and count:
        first = tuple(pytree.tree_map(lambda a: a[0] if isinstance(a, Tensor) else a, args))
        items, chunk_size = _budget_rows(fn, (xs[0], *first), max_memory, chunk_size, count)
        if items < count:
            with torch.no_grad():
                parts = [
                    _batched_eager(
                        fn, xs[i : i + items], _rows_of(args, i, items), chunk_size, has_aux
                    )
                    for i in range(0, count, items)
                ]
            return tuple(  # type: ignore[return-value]
                pytree.tree_map(lambda *ts: torch.cat(ts), *[part[j] for part in parts])
                if j == 2
                else torch.cat([part[j] for part in parts])
                for j in range(len(parts[0]))
            )
    if compile:

        def full(z: Tensor, *rest: Any) -> tuple[Any, ...]:
            return _batched_eager(fn, z, rest, chunk_size, has_aux)

        key = ("batched", _signature(xs), _signature(args), chunk_size, has_aux)
        with torch.no_grad():
            out = _compiled_call(fn, key, full, (xs, *args))
        if out is not None:
            return out  # type: ignore[return-value]
    with torch.no_grad():
        return _batched_eager(fn, xs, args, chunk_size, has_aux)


def _rows_of(args: tuple[Any, ...], start: int, count: int) -> tuple[Any, ...]:
    """Items start .. start + count of pytrees batched along dim 0."""
    return tuple(
        pytree.tree_map(lambda a: a[start : start + count] if isinstance(a, Tensor) else a, args)
    )


def _batched_eager(
    fn: Callable[..., Any],
    xs: Tensor,
    args: tuple[Any, ...],
    chunk_size: int | None,
    has_aux: bool,
) -> tuple[Any, ...]:
    batched = vmap(fn)

    def whole(z: Tensor) -> Any:
        return batched(z, *args)

    with torch.no_grad(), quiet_vmap(), vmapped_attention(xs):
        out: tuple[Any, ...] = vjp(whole, xs, has_aux=has_aux)
        y, pullback = out[0], out[1]
        aux = out[2] if has_aux else None
        if not isinstance(y, Tensor) or y.ndim != 2:
            shape = tuple(y.shape[1:]) if isinstance(y, Tensor) else type(y).__name__
            raise InputError(f"the model output must be a vector (q,), got shape {shape}")
        count, q = y.shape
        basis = torch.eye(q, dtype=y.dtype, device=y.device)
        step = q if chunk_size is None else chunk_size
        rows = []
        for i in range(0, q, step):
            cotangents = basis[i : i + step, None, :].expand(-1, count, q)
            rows.append(vmap(pullback)(cotangents)[0])
        jac = (rows[0] if len(rows) == 1 else torch.cat(rows)).movedim(0, 1).contiguous()
    return (y, jac, aux) if has_aux else (y, jac)
