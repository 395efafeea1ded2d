"""Training from Python (a notebook user's view): run a configuration, read the metrics, evaluate the
saved weights, then look inside the trained network.

    python examples/train_from_python.py [OUT_DIR [ITERATIONS]]

Trains the short evidence-accumulation task for 40 iterations (about 30 s on 2 cores)."""
import sys
import tempfile
from pathlib import Path

import numpy as np

from eprop_gen.train import build, evaluate, load_config, train

CONFIG = Path(__file__).with_name("evidence_accumulation_short.toml")
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "run"
iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 40

result = train(CONFIG, out=out, progress=False, overrides={"training": {"iterations": iterations}},
               on_iteration=lambda m: print(f"iteration {m['iteration']:3d}  loss {m['loss']:7.3f}  "
                                            f"accuracy {m['accuracy']:.2f}") if m["iteration"] % 10 == 9 or m["iteration"] + 1 == iterations else None)
print("run folder:", result.folder)

test = evaluate(CONFIG, result.folder / "weights.npz", samples=64)
print(f"test: {test['samples']} samples, loss {test['loss']:.3f}, accuracy {test['accuracy']:.2f}")

# the network itself: the same builder the trainer uses, with the trained weights
built = build(load_config(CONFIG))
weights = np.load(result.folder / "weights.npz")
built.projections["recurrent"].set_weights(weights["recurrent_weights"])
print("recurrent synapses:", len(built.projections["recurrent"]),
      "mean |w|:", float(np.abs(weights["recurrent_weights"]).mean()))
