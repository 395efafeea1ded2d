"""Where the open ap_fixed / ap_int headers are: Xilinx's HLS arbitrary-precision types
(Apache-2.0, github.com/Xilinx/HLS_arbitrary_Precision_Types), as the hls4ml wheel ships them under
hls4ml/templates/vivado/ap_types. Vitis HLS brings its own copy; g++ needs these for the C simulation.

Found without importing hls4ml (its import pulls in its own dependencies and is not needed): the
package's location from its import spec, or the directory named in EPROP_GEN_AP_TYPES."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from ..errors import EpropGenError

LICENCE = "Apache-2.0 (Xilinx HLS_arbitrary_Precision_Types, shipped by the hls4ml wheel)"
_IN_HLS4ML = Path("templates", "vivado", "ap_types")


def ap_types_dir() -> Path:
    """The directory holding ap_fixed.h; EpropGenError with what to install if there is none."""
    given = os.environ.get("EPROP_GEN_AP_TYPES")
    if given:
        path = Path(given)
        if (path / "ap_fixed.h").is_file():
            return path
        raise EpropGenError(f"EPROP_GEN_AP_TYPES={given} holds no ap_fixed.h")
    spec = importlib.util.find_spec("hls4ml")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(location) / _IN_HLS4ML
        if (path / "ap_fixed.h").is_file():
            return path
    raise EpropGenError("the ap_fixed headers for the C simulation were not found: pip install \"eprop-gen[hls]\" "
                        "(they come with the hls4ml wheel), or point EPROP_GEN_AP_TYPES at a directory with "
                        "ap_fixed.h (e.g. Vitis HLS's include/)")
