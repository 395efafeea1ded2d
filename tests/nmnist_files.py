"""Writes small N-MNIST data sets in the exact binary format and folder / archive layout that
tonic's NMNIST reads, for tests (no internet here; the real set is 60000 + 10000 samples).

Format of a .bin file (Orchard et al. 2015; tonic.io.read_mnist_file): 5 bytes per event,
  byte 0: x (8 bit), byte 1: y (8 bit),
  byte 2: bit 7 polarity, bits 6..0 timestamp bits 22..16, bytes 3, 4: timestamp bits 15..0 (us);
y = 240 marks a timestamp-overflow record (not a spike), so it is never written here.

Layout (tonic: save_to/NMNIST, the archives' contents extracted next to them):
  <save_to>/NMNIST/train.zip, test.zip                 archives holding Train/... and Test/...
  <save_to>/NMNIST/Train/<digit>/<5-digit id>.bin
  <save_to>/NMNIST/Test/<digit>/<5-digit id>.bin
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE = 34
T_MAX = 336040                 # the longest N-MNIST recording (us), as used by NEST
DEAD = ((0, 0, 0), (33, 33, 1), (1, 0, 0))   # (x, y, p) of pixels on NEST's blocklist (ids 0, 2311, 1)
ISOLATED = (29, 1, 0, 250_000)               # (x, y, p, t): active pixel 63, no neighbour: denoised away
DUPLICATE = (17, 17, 1, 120_000)             # (x, y, p, t): three events of this pixel within 2 us
EVENTS = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])


@dataclass(frozen=True)
class Sample:
    path: Path                 # the .bin file
    label: int
    events: np.ndarray         # as written, dtype EVENTS, sorted by t


def encode(events: np.ndarray) -> bytes:
    """The N-MNIST bytes of events (fields x, y, p, t)."""
    x, y = np.asarray(events["x"], np.int64), np.asarray(events["y"], np.int64)
    p, t = np.asarray(events["p"], np.int64), np.asarray(events["t"], np.int64)
    if x.min(initial=0) < 0 or x.max(initial=0) > 255 or y.min(initial=0) < 0 or y.max(initial=0) > 255:
        raise ValueError("x and y must fit in 8 bits")
    if np.any(y == 240):
        raise ValueError("y = 240 marks an overflow record in N-MNIST files")
    if np.any((p != 0) & (p != 1)) or t.min(initial=0) < 0 or t.max(initial=0) >= 2 ** 23:
        raise ValueError("polarity must be 0/1 and timestamps must fit in 23 bits")
    raw = np.empty((x.size, 5), np.uint8)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (p << 7) | ((t >> 16) & 0x7F)
    raw[:, 3], raw[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return raw.tobytes()


def _events(rows) -> np.ndarray:
    out = np.zeros(len(rows), EVENTS)
    for name, column in zip(("x", "y", "p", "t"), np.asarray(rows, np.int64).reshape(-1, 4).T):
        out[name] = column
    return out


def make_sample(rng: np.random.Generator, label: int, n_events: int = 300) -> np.ndarray:
    """A digit-like blob (a 6x6 patch of connected pixels whose place depends on the label) with
    events spread over 0..T_MAX, plus events on dead pixels, one isolated event, three same-pixel
    events within 2 us, and events at t = 0 and t = T_MAX; sorted by t."""
    x0, y0 = 8 + 2 * (label % 5), 9 + 3 * (label // 5)
    n = n_events - 10
    blob = np.c_[x0 + rng.integers(0, 6, n), y0 + rng.integers(0, 6, n), rng.integers(0, 2, n),
                 np.sort(rng.integers(0, T_MAX + 1, n))]
    x, y, p, t = DUPLICATE
    extra = [(dx, dy, dp, 1000 + 7000 * k) for k, (dx, dy, dp) in enumerate(DEAD)]
    extra += [ISOLATED, (x, y, p, t), (x, y, p, t + 1), (x, y, p, t + 2),
              (x0, y0, 0, 0), (x0 + 1, y0, 0, T_MAX), (x0 + 2, y0 + 1, 1, 300_000)]
    events = _events(np.r_[blob, np.asarray(extra, np.int64)])
    return events[np.argsort(events["t"], kind="stable")]


def _write_split(root: Path, folder: str, n: int, rng: np.random.Generator, n_events: int,
                 first_id: int) -> list[Sample]:
    samples = []
    for k in range(n):
        label = k % 10
        events = make_sample(rng, label, n_events)
        path = root / folder / str(label) / f"{first_id + k:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(events))
        samples.append(Sample(path, label, events))
    # tonic lists digit folders, then files, in sorted order
    return sorted(samples, key=lambda s: (s.label, s.path.name))


def _zip(root: Path, folder: str, archive: str) -> None:
    with zipfile.ZipFile(root / archive, "w") as z:
        for path in sorted((root / folder).rglob("*.bin")):
            z.write(path, path.relative_to(root).as_posix())


def write_nmnist(save_to, n_train: int = 20, n_test: int = 10, seed: int = 0, n_events: int = 300,
                 archives: bool = True, extracted: bool = True) -> dict[str, list[Sample]]:
    """Writes <save_to>/NMNIST/{Train,Test}/<digit>/*.bin (and train.zip / test.zip); returns the
    samples of each split ("train", "test") in tonic's order. With extracted=False only the
    archives stay (as right after tonic's download, before extraction)."""
    root = Path(save_to) / "NMNIST"
    rng = np.random.default_rng(seed)
    out = {"train": _write_split(root, "Train", n_train, rng, n_events, 0),
           "test": _write_split(root, "Test", n_test, rng, n_events, 60000)}
    if archives:
        _zip(root, "Train", "train.zip")
        _zip(root, "Test", "test.zip")
    if not extracted:
        for samples in out.values():
            for s in samples:
                s.path.unlink()
    return out
