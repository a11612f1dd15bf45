"""Records the Triton launches the pack's dispatchers make, with no GPU, and turns each into the
compile request Triton's JIT would make for a given GPU.

While `recording()` is active, every @triton.jit function of the given modules has its `run`
replaced by a recorder, so `kernel[grid](...)` stores (function, args, kwargs) instead of
launching. The dispatchers run on CPU tensors whose shapes, dtypes and (16-byte) alignment are
those of a real call; the sizes they derive (block sizes, warps, stages, which kernel) come from
the dispatcher's own code. `compile_request` then feeds the recorded call through Triton's own
argument binder and specialization (`create_function_from_signature`, `JITFunction._pack_args`:
the same steps as JITFunction.run), so signature, constexprs and divisibility attributes are the
ones the JIT would compile on that GPU. Those two are Triton internals (checked with 3.8).
"""
from __future__ import annotations

import contextlib
import dataclasses
from types import ModuleType

import triton
from triton.runtime.jit import JITFunction

_CURRENT_LABEL = ["(no label)"]


@dataclasses.dataclass
class Launch:
    label: str  # which dispatcher call made it, e.g. "int8.linear bf16 block128 bias"
    fn: JITFunction
    args: tuple
    kwargs: dict

    @property
    def kernel(self) -> str:
        return self.fn.fn.__name__


@contextlib.contextmanager
def labelled(label: str):
    _CURRENT_LABEL.append(label)
    try:
        yield
    finally:
        _CURRENT_LABEL.pop()


def _recorder(fn: JITFunction, launches: list[Launch]):
    def run(*args, grid, warmup, **kwargs):
        launches.append(Launch(_CURRENT_LABEL[-1], fn, args, dict(kwargs)))
        return None

    return run


@contextlib.contextmanager
def recording(modules: list[ModuleType]):
    """Yields the list that collects every launch of the modules' Triton kernels."""
    launches: list[Launch] = []
    found = {id(fn): fn for module in modules for fn in vars(module).values() if isinstance(fn, JITFunction)}
    patched = list(found.values())  # a helper imported by two modules is patched once
    for fn in patched:
        fn.run = _recorder(fn, launches)  # the instance attribute shadows JITFunction.run
    try:
        yield launches
    finally:
        for fn in patched:
            del fn.run


def _internals():
    try:
        from triton import knobs
        from triton.compiler import ASTSource, make_backend
        from triton.runtime.jit import create_function_from_signature
    except ImportError as error:
        raise RuntimeError(f"--compile reads Triton's JIT internals (checked with triton 3.8); triton "
                           f"{triton.__version__} lacks one ({error}). Run it with the hosts' triton") from error
    return knobs, ASTSource, make_backend, create_function_from_signature


def compile_request(launch: Launch, target) -> tuple:
    """(ASTSource, options dict) exactly as JITFunction.run would compile this launch for `target`."""
    knobs, ast_source, make_backend, create_binder = _internals()
    fn, kwargs = launch.fn, dict(launch.kwargs)
    kwargs["debug"] = kwargs.get("debug", fn.debug) or knobs.runtime.debug
    if hasattr(knobs.compilation, "instrumentation_mode"):
        kwargs["instrumentation_mode"] = knobs.compilation.instrumentation_mode
    backend = make_backend(target)
    binder = create_binder(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*launch.args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound_args, specialization, options)
    return ast_source(fn, signature, constexprs, attrs), options.__dict__


def describe(source, options: dict) -> str:
    """One line: pointer dtypes, constexpr values, ints specialised as multiples of 16, warps/stages."""
    names = source.fn.arg_names
    pointers = [f"{n}:{t[1:]}" for n, t in source.signature.items() if t.startswith("*")]
    constants = [f"{names[k[0]]}={_short(v)}" for k, v in sorted(source.constants.items())]
    aligned = sorted(names[k[0]] for k, v in source.attrs.items()
                     if v and not source.signature[names[k[0]]].startswith("*"))
    warps = f"warps={options.get('num_warps')} stages={options.get('num_stages')}"
    return " ".join(constants + pointers + [f"div16({','.join(aligned) or '-'})", warps])


def _short(value) -> str:
    return getattr(value, "name", None) or str(value)


def request_key(source, options: dict) -> str:
    """Identical compile requests (same kernel, signature, constants, attributes, warps, stages)."""
    return f"{source.fn.fn.__name__}|{describe(source, options)}"
