"""ctypes view of the engine library (templates/cpp/engine.cpp) and of eg_runtime.h.

The Structure classes below mirror the C structs field for field; `engine_library()` compares
their sizes with the compiled ones, so a mismatch fails loudly at load time instead of corrupting
memory. Numpy arrays are handed over as raw pointers (no copies); whoever builds these structs
must keep the arrays alive for as long as C may use them.
"""
from __future__ import annotations

import ctypes
import functools
import warnings
from pathlib import Path

import numpy as np

from ..build import build_and_load
from ..paths import resource_dir
from ..precision import LEARNING_FLAGS, LEARNING_REAL

REAL = np.float64                 # eg_real (EG_REAL defaults to double)
c_real = ctypes.c_double
c_real_p = ctypes.POINTER(c_real)
c_real_pp = ctypes.POINTER(c_real_p)
c_int64_p = ctypes.POINTER(ctypes.c_int64)
c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_uint8_p = ctypes.POINTER(ctypes.c_uint8)
# stored per synapse, so small (eg_eprop.h: eg_target_id, eg_delay)
TARGET_ID_DTYPE, c_target_id = np.int32, ctypes.c_int32
DELAY_DTYPE, c_delay = np.int16, ctypes.c_int16
MAX_TARGETS = 2 ** 31             # neurons a population may have as synapse targets
MAX_DELAY = 2 ** 15 - 1           # steps
KERNEL = ctypes.c_void_p          # eg_kernel: address from CompiledModel.kernel_address

ENGINE_ABI = 10


class EgPopulation(ctypes.Structure):          # eg_population (eg_runtime.h)
    _fields_ = [
        ("n", ctypes.c_int64),
        ("dt", ctypes.c_double),
        ("step", ctypes.c_int64),
        ("state", c_real_pp),
        ("param", c_real_pp),
        ("coeff", c_real_pp),
        ("spike_in", c_real_pp),
        ("current_in", c_real_pp),
        ("refractory", c_int32_p),
        ("spiked", c_uint8_p),
    ]


class EgEnginePop(ctypes.Structure):           # eg_engine_pop (engine.cpp)
    _fields_ = [
        ("model", ctypes.POINTER(EgPopulation)),
        ("prepare", KERNEL),
        ("update", KERNEL),
        ("n", ctypes.c_int64),
        ("n_spike_ports", ctypes.c_int32),
        ("n_current_ports", ctypes.c_int32),
        ("ring", c_real_pp),
        ("ring_slots", c_int64_p),
        ("n_events", ctypes.c_int64),
        ("event_step", c_int64_p),
        ("event_sender", c_int64_p),
        ("event_multiplicity", c_real_p),
        ("rec_capacity", ctypes.c_int64),
        ("rec_count", ctypes.c_int64),
        ("rec_step", c_int64_p),
        ("rec_sender", c_int64_p),
        ("flush_capacity", ctypes.c_int64),     # flush events (spiked == 2), like the spikes
        ("flush_count", ctypes.c_int64),
        ("flush_step", c_int64_p),
        ("flush_sender", c_int64_p),
        ("interval_offset", ctypes.c_int64),    # time-driven engine only, from here on
        ("n_states", ctypes.c_int32),
        ("n_observables", ctypes.c_int32),
        ("initial_state", c_real_pp),
        ("spike_flags", c_uint8_p),
        ("flag_capacity", ctypes.c_int64),
    ]


class EgProjection(ctypes.Structure):          # eg_projection
    _fields_ = [
        ("source", ctypes.c_int32),
        ("target", ctypes.c_int32),
        ("port", ctypes.c_int32),
        ("uniform_delay", ctypes.c_int32),    # every synapse's delay if they all have one, else 0
        ("row_ptr", c_int64_p),
        ("target_id", ctypes.POINTER(c_target_id)),
        ("weight", c_real_p),
        ("delay", ctypes.POINTER(c_delay)),
        ("plastic", ctypes.c_void_p),     # eg_plastic* (plasticity.EgPlastic), NULL: static
        ("replay_event", KERNEL),         # eg_event_kernel of the target model's port
        ("interval", KERNEL),             # eg_interval_kernel of the same (time-driven engine)
        ("batch_optimizer", ctypes.c_void_p),   # eg_optimizer* applied per batch of samples
        ("eligibility_size", ctypes.c_int32),
        ("n_traces", ctypes.c_int32),
        ("max_delay", ctypes.c_int64),
        ("settle_steps", ctypes.c_int64),       # event-driven: settle windows this long (0: never)
    ]


class EgArchive(ctypes.Structure):             # eg_archive
    _fields_ = [
        ("pop", ctypes.c_int32),
        ("psi_state", ctypes.c_int32),
        ("reg_state", ctypes.c_int32),
        ("output_state", ctypes.c_int32),
        ("history", ctypes.c_void_p),     # eg_history* (plasticity.EgHistory)
        ("target_rows", ctypes.c_int64),
        ("target", c_real_p),
        ("window_rows", ctypes.c_int64),
        ("window", c_real_p),
        ("target_start", ctypes.c_int64),
        ("window_start", ctypes.c_int64),
        ("softmax", ctypes.c_int32),
        ("n_extra", ctypes.c_int32),
        ("spike_count", c_int64_p),       # time-driven engine only
        ("interval_spikes", c_int64_p),
        ("count_slots", ctypes.c_int64),
        ("extra_state", ctypes.POINTER(ctypes.c_int32)),
    ]


class EgFeedback(ctypes.Structure):            # eg_feedback
    _fields_ = [
        ("readout", ctypes.c_int32),
        ("target", ctypes.c_int32),
        ("weight", c_real_p),
    ]


class EgCurrentSource(ctypes.Structure):       # eg_current_source
    _fields_ = [
        ("pop", ctypes.c_int32),
        ("port", ctypes.c_int32),
        ("n_changes", ctypes.c_int64),
        ("change_step", c_int64_p),
        ("amplitude", c_real_p),
        ("width", ctypes.c_int64),
        ("n_targets", ctypes.c_int64),
        ("targets", c_int64_p),
    ]


class EgStateRecorder(ctypes.Structure):       # eg_state_recorder
    _fields_ = [
        ("pop", ctypes.c_int32),
        ("state", ctypes.c_int32),
        ("n_neurons", ctypes.c_int64),
        ("neurons", c_int64_p),
        ("first_step", ctypes.c_int64),
        ("out", c_real_p),
    ]


class EgNetwork(ctypes.Structure):             # eg_network
    _fields_ = [
        ("n_pops", ctypes.c_int32),
        ("n_projections", ctypes.c_int32),
        ("n_currents", ctypes.c_int32),
        ("n_recorders", ctypes.c_int32),
        ("pops", ctypes.POINTER(EgEnginePop)),
        ("projections", ctypes.POINTER(EgProjection)),
        ("currents", ctypes.POINTER(EgCurrentSource)),
        ("recorders", ctypes.POINTER(EgStateRecorder)),
        ("n_archives", ctypes.c_int32),
        ("n_feedbacks", ctypes.c_int32),
        ("archives", ctypes.POINTER(EgArchive)),
        ("feedbacks", ctypes.POINTER(EgFeedback)),
        ("n_projections_at_previous_step", ctypes.c_int64),
        ("error_code", ctypes.c_int64),
        ("error_info", ctypes.c_int64 * 4),
        ("update_interval", ctypes.c_int64),    # time-driven engine: U steps; 0 = event-driven
        ("learning_window", ctypes.c_int64),
        ("reset_neurons", ctypes.c_int32),
        ("average_gradient", ctypes.c_int32),
        ("sample_steps", ctypes.c_int64),       # event-driven samples (minibatches); 0 = continuous
        ("rank", ctypes.c_int32),               # MPI: this process's rank and the number of ranks
        ("n_ranks", ctypes.c_int32),
        ("exchange", ctypes.c_void_p),          # EXCHANGE callback (distributed.py); NULL: one process
        ("exchange_ctx", ctypes.c_void_p),
        ("exchange_outputs", ctypes.c_int32),   # 1: phase 0 (softmax readouts' outputs) each step
        ("delivery_interval", ctypes.c_int64),  # static spikes delivered (and exchanged) per D steps
        ("pending_step", ctypes.c_int64),       # in/out: the first step not yet delivered
    ]


# void exchange(void* ctx, int64_t step, int32_t phase): called by the engine under MPI
EXCHANGE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32)


MIRRORED_STRUCTS = (EgPopulation, EgEnginePop, EgProjection, EgCurrentSource, EgStateRecorder,
                    EgNetwork, EgArchive, EgFeedback)
# Mirrored in plasticity.py (which imports this module); their sizes follow those above.
LEARNING_STRUCT_NAMES = ("EgHistory", "EgPlastic", "EgIntervalReplay", "EgBlocks", "EgWindows", "EgEventBatch")


def pointer(array: np.ndarray | None, ctype):
    """A ctypes pointer to a C-contiguous numpy array's data (NULL for None); no copy."""
    if array is None:
        return ctypes.cast(None, ctypes.POINTER(ctype))
    if not array.flags.c_contiguous:
        raise ValueError("internal error: engine arrays must be C-contiguous")
    return array.ctypes.data_as(ctypes.POINTER(ctype))


def pointer_table(arrays, ctype) -> ctypes.Array:
    """A C array of pointers to the data of `arrays` (e.g. eg_real** state)."""
    table_type = ctypes.POINTER(ctype) * max(1, len(arrays))
    return table_type(*[pointer(a, ctype) for a in arrays])


def struct_array(struct_type, items) -> ctypes.Array:
    return (struct_type * max(1, len(items)))(*items)


def template_dir() -> Path:
    """templates/cpp (engine.cpp, eg_runtime.h) of a source checkout or an installed package."""
    return resource_dir("templates") / "cpp"


ENGINE_SOURCES = ("engine.cpp", "engine_learning.h", "eg_runtime.h", "eg_eprop.h", "eg_optimizer.h")
# The engine itself only adds and multiplies, but its sums must stay NEST's: no FMA contraction.
ENGINE_FLAGS = ("-ffp-contract=off",)


def runtime_sources() -> dict[str, str]:
    folder = template_dir()
    return {name: (folder / name).read_text() for name in ENGINE_SOURCES}


@functools.lru_cache(maxsize=None)
def engine_library(cache_dir: Path | None = None) -> ctypes.CDLL:
    """The compiled engine (built once, then cached on disk), with every entry point declared."""
    _, lib = build_and_load(runtime_sources(), name="eg_engine", openmp=True, cache_dir=cache_dir,
                            extra_flags=ENGINE_FLAGS + LEARNING_FLAGS)
    _declare_entry_points(lib)
    _check_layout(lib)
    return lib


def _declare_entry_points(lib: ctypes.CDLL) -> None:
    lib.eg_engine_simulate.argtypes = [ctypes.POINTER(EgNetwork), ctypes.c_int64, ctypes.c_int64,
                                       ctypes.c_int32]
    lib.eg_engine_simulate.restype = ctypes.c_int64
    for name in ("eg_engine_abi", "eg_engine_real_size", "eg_engine_learning_real_size", "eg_engine_has_openmp"):
        getattr(lib, name).argtypes = []
        getattr(lib, name).restype = ctypes.c_int32
    lib.eg_engine_struct_sizes.argtypes = [c_int64_p]
    lib.eg_engine_struct_sizes.restype = None


def _check_layout(lib: ctypes.CDLL) -> None:
    if lib.eg_engine_abi() != ENGINE_ABI:
        raise RuntimeError(f"engine ABI {lib.eg_engine_abi()} != {ENGINE_ABI} expected by Python")
    if lib.eg_engine_real_size() != np.dtype(REAL).itemsize:
        raise RuntimeError("engine eg_real size does not match numpy dtype used by Python")
    if lib.eg_engine_learning_real_size() != np.dtype(LEARNING_REAL).itemsize:
        raise RuntimeError("engine eg_lreal size does not match the learning precision of Python")
    from . import plasticity   # imports this module, so only here
    structs = MIRRORED_STRUCTS + tuple(getattr(plasticity, n) for n in LEARNING_STRUCT_NAMES)
    sizes = np.zeros(len(structs), dtype=np.int64)
    lib.eg_engine_struct_sizes(pointer(sizes, ctypes.c_int64))
    for struct, size in zip(structs, sizes):
        if ctypes.sizeof(struct) != size:
            raise RuntimeError(f"ctypes mirror {struct.__name__} has {ctypes.sizeof(struct)} "
                               f"bytes, C has {size}")


_warned_serial = False


def warn_if_serial(lib: ctypes.CDLL, threads: int) -> None:
    global _warned_serial
    if threads > 1 and not lib.eg_engine_has_openmp() and not _warned_serial:
        _warned_serial = True
        warnings.warn(f"the engine was built without OpenMP; threads={threads} runs serially",
                      RuntimeWarning, stacklevel=3)
