"""N-MNIST input path (NEST 3.10's e-prop tutorial eprop_supervised_classification_neuromorphic_mnist.py),
read through tonic.

- `open_nmnist` gives tonic's own `tonic.datasets.NMNIST` (a thin subclass that accepts an existing
  local copy of any size and never downloads unless asked); samples are read lazily, one .bin file
  per `dataset[i]`, by tonic's reader `tonic.io.read_mnist_file`.
- `input_layout` says which (x, y, polarity) pixels are inputs: 2*34*34 minus NEST's blocklist of
  1116 dead pixels = 1196 inputs (`nmnist_blocklist.txt`, copied from NEST 3.10.0).
- `sample_spikes` maps one sample's events to input spikes with NEST's timing:
  time = round(t_us * steps / 336040) + 1 + offset (ms, dt = 1 ms); duplicates are kept.
- `iterate_batches` streams batches sample by sample in a seeded random order.
- `one_hot_targets` / `learning_window` give the per-step target and window of a batch.

Layout on disk (what tonic's NMNIST reads): <data>/NMNIST/Train/<digit>/<id>.bin and
<data>/NMNIST/Test/<digit>/<id>.bin (tonic also keeps train.zip / test.zip there after downloading);
`data` may also be a folder that holds Train/ and Test/ directly (e.g. NEST's 468j46mzdv-1/), and
an archive without its extracted folder is unpacked with tonic's extract_archive.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import tonic
import tonic.transforms
from tonic.datasets import NMNIST
from tonic.download_utils import extract_archive

SIZE = 34                      # N-MNIST sensor: 34 x 34 pixels, 2 polarities
TIME_MAX_US = 336040           # NEST: longest recording over training and test set (us)
STEPS = 300                    # NEST: steps (ms) per sample
WINDOW = 10                    # NEST: learning window, the last steps of each sample
N_CLASSES = 10
BLOCKLIST_FILE = Path(__file__).with_name("nmnist_blocklist.txt")


# ---------------------------------------------------------------------------------------------
# Input layout: which pixels are inputs
# ---------------------------------------------------------------------------------------------

def nest_blocklist() -> np.ndarray:
    """NEST's 1116 dead pixels (pixel = polarity*34*34 + y*34 + x), sorted."""
    return np.unique(np.loadtxt(BLOCKLIST_FILE, dtype=np.int64, comments="#"))


@dataclass(frozen=True, eq=False)
class InputLayout:
    """The inputs of the network: input i is pixel active[i], where
    pixel = polarity*width*height + y*width + x (NEST's numbering)."""
    width: int
    height: int
    active: np.ndarray

    @property
    def n_in(self) -> int:
        return int(self.active.size)

    @property
    def n_pixels(self) -> int:
        return 2 * self.width * self.height

    def senders(self, events: np.ndarray) -> np.ndarray:
        """Input index of each event (fields x, y, p), -1 for blocked or out-of-sensor events."""
        x = np.asarray(events["x"], dtype=np.int64)
        y = np.asarray(events["y"], dtype=np.int64)
        p = np.asarray(events["p"], dtype=np.int64)
        inside = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height) & ((p == 0) | (p == 1))
        pixel = np.where(inside, p * self.width * self.height + y * self.width + x, 0)
        lookup = np.full(self.n_pixels, -1, dtype=np.int64)
        lookup[self.active] = np.arange(self.n_in)
        return np.where(inside, lookup[pixel], -1)


def _factors(spatial_factor) -> tuple[float, float]:
    fx, fy = spatial_factor if isinstance(spatial_factor, (tuple, list)) else (spatial_factor,) * 2
    for f in (fx, fy):
        if not 0.0 < f <= 1.0:
            raise ValueError(f"spatial_factor must be in (0, 1], got {spatial_factor!r}")
    return float(fx), float(fy)


def input_layout(spatial_factor=None, blocklist="nest") -> InputLayout:
    """Inputs for the native 34x34 sensor or after tonic's Downsample(spatial_factor=f).

    blocklist: "nest" (NEST's 1116 dead pixels), None (every pixel is an input) or pixel ids on
    the native 34x34 grid. With downsampling, tonic maps x to int(x*f) (likewise y); a downsampled
    pixel is an input iff at least one native pixel that maps onto it is not blocked.
    """
    native = np.arange(2 * SIZE * SIZE)
    if isinstance(blocklist, str):
        if blocklist != "nest":
            raise ValueError(f"blocklist must be 'nest', None or pixel ids, got {blocklist!r}")
        blocked = nest_blocklist()
    else:
        blocked = np.zeros(0, np.int64) if blocklist is None else np.asarray(blocklist, dtype=np.int64)
    if blocked.size and (blocked.min() < 0 or blocked.max() >= native.size):
        raise ValueError(f"blocklist pixel ids must lie in [0, {native.size})")
    alive = np.setdiff1d(native, blocked)
    if spatial_factor is None:
        return InputLayout(SIZE, SIZE, alive)
    fx, fy = _factors(spatial_factor)
    coord = np.arange(SIZE, dtype=np.int64)
    xs, ys = (coord * fx).astype(np.int64), (coord * fy).astype(np.int64)   # tonic's truncation
    width, height = int(xs.max()) + 1, int(ys.max()) + 1
    p, rest = np.divmod(alive, SIZE * SIZE)
    y, x = np.divmod(rest, SIZE)
    return InputLayout(width, height, np.unique(p * width * height + ys[y] * width + xs[x]))


# ---------------------------------------------------------------------------------------------
# Opening the data set (tonic)
# ---------------------------------------------------------------------------------------------

def make_transform(denoise_us: float | None = None, spatial_factor=None,
                   extra: Sequence[Callable] = ()) -> Callable | None:
    """tonic.transforms.Compose of Denoise(filter_time=denoise_us) (us; drops events without a
    4-neighbour event within that time), Downsample(spatial_factor=...) and `extra`, in this order;
    None if there is nothing to do."""
    steps = []
    if denoise_us is not None:
        steps.append(tonic.transforms.Denoise(filter_time=denoise_us))
    if spatial_factor is not None:
        steps.append(tonic.transforms.Downsample(spatial_factor=_factors(spatial_factor)))
    steps.extend(extra)
    return tonic.transforms.Compose(steps) if steps else None


def _has_bin(folder: Path) -> bool:
    return folder.is_dir() and next(folder.rglob("*.bin"), None) is not None


def _locate(data_dir: Path, folder: str, archive: str) -> Path | None:
    """The folder that holds <folder>/<digit>/*.bin: data_dir/NMNIST (tonic's) or data_dir. Where
    only the archive (train.zip / test.zip) is there, tonic's extract_archive unpacks it first
    (no md5 check: a local copy)."""
    roots = (data_dir / "NMNIST", data_dir)
    for root in roots:
        if _has_bin(root / folder):
            return root
    for root in roots:
        if (root / archive).is_file():
            extract_archive(str(root / archive), str(root))
            if _has_bin(root / folder):
                return root
    return None


def _missing_message(data_dir: Path, folder: str) -> str:
    return (f"N-MNIST {folder} data not found under {data_dir}: expected "
            f"{data_dir / 'NMNIST' / folder}/<digit>/*.bin (tonic's layout) or "
            f"{data_dir / folder}/<digit>/*.bin. "
            f"Point the data path (--data PATH) at an existing copy, or pass download=True on a machine with "
            f"internet to let tonic download it (from {NMNIST.base_url}) into {data_dir / 'NMNIST'}.")


class NMNISTData(NMNIST):
    """tonic.datasets.NMNIST reading a given folder (root/Train, root/Test) of any size.

    tonic's own check wants train.zip / test.zip and >= 10000 .bin files, else it downloads; here any
    .bin file under the split's folder is enough, and download() only runs tonic's real download
    (with its md5 check) when allowed. Listing, labels (from the digit folder), reading and
    transforms are tonic's unchanged. `input_layout` is the matching InputLayout.
    """

    def __init__(self, root: Path, train: bool, allow_download: bool, layout: InputLayout, **kwargs):
        self._root = str(root)
        self._allow_download = allow_download
        self.input_layout = layout
        super().__init__(save_to=str(Path(root).parent), train=train, **kwargs)

    @property
    def location_on_system(self) -> str:
        return self._root

    @location_on_system.setter
    def location_on_system(self, _value) -> None:
        pass                       # tonic sets <save_to>/NMNIST; the folder that was found is kept

    def _check_exists(self) -> bool:
        return _has_bin(Path(self._root, self.folder_name))

    def download(self) -> None:
        if not self._allow_download:
            raise FileNotFoundError(_missing_message(Path(self._root).parent, self.folder_name))
        try:
            super().download()     # tonic: fetch self.url, check self.file_md5, extract into the root
        except OSError as error:
            raise OSError(f"tonic could not download N-MNIST ({self.filename}) from {self.url} into "
                          f"{self._root}: {error}. Without internet, point the data path at an existing "
                          f"copy instead.") from error


def open_nmnist(data_dir, train: bool = True, download: bool = False, *, first_saccade_only: bool = False,
                stabilize: bool = False, denoise_us: float | None = None, spatial_factor=None,
                blocklist="nest", transform: Sequence[Callable] = ()) -> NMNISTData:
    """The N-MNIST training or test set as a lazy tonic dataset: dataset[i] reads one .bin file and
    returns (events with fields x, y, t (us), p; label).

    data_dir holds NMNIST/Train, NMNIST/Test (tonic's layout) or Train, Test directly, or only the
    archives train.zip / test.zip there (then unpacked in place). Missing data raises
    FileNotFoundError unless download=True, which runs tonic's download into data_dir/NMNIST.
    first_saccade_only / stabilize are tonic's options; denoise_us, spatial_factor and `transform`
    (extra tonic transforms) build the tonic transform (make_transform). The dataset's
    `input_layout` (see input_layout) matches spatial_factor and blocklist.
    """
    data_dir = Path(data_dir).expanduser()
    folder = NMNIST.train_folder if train else NMNIST.test_folder
    root = _locate(data_dir, folder, NMNIST.train_filename if train else NMNIST.test_filename)
    if root is None:
        if not download:
            raise FileNotFoundError(_missing_message(data_dir, folder))
        root = data_dir / "NMNIST"
    layout = input_layout(spatial_factor, blocklist)
    dataset = NMNISTData(root, train, download, layout, first_saccade_only=first_saccade_only,
                         stabilize=stabilize, transform=make_transform(denoise_us, spatial_factor, transform))
    if len(dataset) == 0:
        raise FileNotFoundError(_missing_message(data_dir, folder))
    return dataset


# ---------------------------------------------------------------------------------------------
# Events -> input spikes, batches, targets
# ---------------------------------------------------------------------------------------------

def sample_spikes(events: np.ndarray, layout: InputLayout | None = None, steps: int = STEPS,
                  offset: float = 0.0, time_max_us: float = TIME_MAX_US) -> tuple[np.ndarray, np.ndarray]:
    """(times, senders) of one sample, sorted by (time, sender), following NEST:
    time = round(t_us * steps / time_max_us) + 1 + offset ms; events on blocked pixels are dropped;
    several events of a pixel in the same ms give repeated (time, sender) pairs (multiplicity).

    A sample starting at `offset` has its spikes in [offset + 1, offset + steps + 1] (the last value
    only for t_us > ~335480, as in NEST)."""
    layout = layout or input_layout()
    senders = layout.senders(events)
    keep = senders >= 0
    t_us = np.asarray(events["t"], dtype=np.float64)[keep]
    times = np.rint(t_us * steps / time_max_us) + 1.0 + offset
    senders = senders[keep]
    order = np.lexsort((senders, times))
    return times[order], senders[order]


@dataclass(frozen=True, eq=False)
class NMNISTBatch:
    """Input of a batch: sample k of the batch from k * steps on."""
    times: np.ndarray          # spike times (ms), float64
    senders: np.ndarray        # input index of each spike
    labels: np.ndarray         # (batch,) digit of each sample
    indices: np.ndarray        # (batch,) dataset index of each sample


def sample_order(n_total: int, seed: int, shuffle: bool = True, n_samples: int | None = None) -> np.ndarray:
    """Dataset indices in the order they are used: a permutation by np.random.default_rng(seed)
    (or 0..n-1), cut to the first n_samples."""
    order = np.random.default_rng(seed).permutation(n_total) if shuffle else np.arange(n_total)
    return order if n_samples is None else order[:n_samples]


def iterate_batches(dataset, batch_size: int, steps: int = STEPS, seed: int = 0, *,
                    layout: InputLayout | None = None, n_samples: int | None = None, shuffle: bool = True,
                    drop_last: bool = False, time_max_us: float = TIME_MAX_US) -> Iterator[NMNISTBatch]:
    """Batches of input spikes, read sample by sample (dataset[i] only: one sample's events at a time).

    dataset: anything with len() and dataset[i] -> (events, label), e.g. open_nmnist(...).
    layout defaults to dataset.input_layout, else NEST's native layout. The order is
    sample_order(len(dataset), seed, shuffle, n_samples); use another seed for another epoch.
    The last batch may be smaller unless drop_last.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    layout = layout or getattr(dataset, "input_layout", None) or input_layout()
    order = sample_order(len(dataset), seed, shuffle, n_samples)
    for start in range(0, order.size, batch_size):
        indices = order[start:start + batch_size]
        if drop_last and indices.size < batch_size:
            return
        times, senders, labels = [], [], []
        for k, index in enumerate(indices):
            events, label = dataset[int(index)]
            t, s = sample_spikes(events, layout, steps, k * steps, time_max_us)
            del events
            times.append(t)
            senders.append(s)
            labels.append(int(label))
        yield NMNISTBatch(np.concatenate(times), np.concatenate(senders),
                          np.asarray(labels, dtype=np.int64), indices.copy())


def one_hot_targets(labels, steps: int = STEPS, n_classes: int = N_CLASSES) -> np.ndarray:
    """(len(labels) * steps, n_classes): the one-hot label of each sample at every step of it."""
    labels = np.asarray(labels, dtype=np.int64)
    return np.repeat(np.eye(n_classes)[labels], steps, axis=0)


def learning_window(n_samples: int, steps: int = STEPS, window: int = WINDOW) -> np.ndarray:
    """(n_samples * steps,): 1 in the last `window` steps of each sample, else 0 (NEST: 10)."""
    if not 0 <= window <= steps:
        raise ValueError(f"window must be in [0, steps={steps}], got {window}")
    return np.tile(np.r_[np.zeros(steps - window), np.ones(window)], n_samples)
