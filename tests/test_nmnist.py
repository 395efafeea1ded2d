"""N-MNIST input path: small data sets in the exact N-MNIST format (tests/nmnist_files.py), read
through tonic's own NMNIST dataset and reader; NEST 3.10's timing, blocklist and batching."""
from __future__ import annotations

import ast
import importlib.util
import shutil
import urllib.error
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tonic
import tonic.dataset
import tonic.io
from tonic.datasets import NMNIST

from eprop_gen.tasks import nmnist as nm
from nmnist_files import DEAD, DUPLICATE, ISOLATED, T_MAX, encode, write_nmnist


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("nmnist")
    return root, write_nmnist(root, n_train=20, n_test=10, seed=3)


def _fields(events):
    return {name: np.asarray(events[name], np.int64) for name in ("x", "y", "t", "p")}


def _assert_same_events(read, written):
    a, b = _fields(read), _fields(written)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def _nest_spikes(events, blocklist, steps=300, offset=0.0):
    """NEST 3.10's load_image + get_params_task_input_output, event by event."""
    active = sorted(set(range(2 * 34 * 34)) - set(blocklist))
    index = {pixel: i for i, pixel in enumerate(active)}
    pairs = []
    for x, y, p, t in zip(events["x"], events["y"], events["p"], events["t"]):
        pixel = int(p) * 34 * 34 + int(y) * 34 + int(x)
        if pixel in index:
            pairs.append((offset + float(np.around(int(t) * float(steps) / T_MAX)) + 1.0, index[pixel]))
    return sorted(pairs)


# --- format and layout: tonic reads what was written ----------------------------------------

def test_bytes_follow_the_nmnist_bit_layout():
    ev = np.zeros(1, [("x", int), ("y", int), ("t", int), ("p", int)])
    ev[0] = (33, 7, 2 ** 23 - 2, 1)
    assert encode(ev) == bytes([33, 7, 0x80 | 0x7F, 0xFF, 0xFE])


def test_tonic_reads_back_what_was_written(data):
    root, written = data
    for train, split in ((True, "train"), (False, "test")):
        ds = nm.open_nmnist(root, train=train)
        assert isinstance(ds, NMNIST)
        assert type(ds).__getitem__ is NMNIST.__getitem__          # tonic's own reading
        assert len(ds) == len(written[split])
        assert ds.data == [str(s.path) for s in written[split]]
        for i, sample in enumerate(written[split]):
            events, label = ds[i]
            assert label == sample.label
            _assert_same_events(events, sample.events)
            _assert_same_events(tonic.io.read_mnist_file(str(sample.path), dtype=NMNIST.dtype), sample.events)


def test_layout_is_the_one_tonics_own_check_accepts(data, monkeypatch):
    """Plain tonic.datasets.NMNIST on the written folder: only its >= 10000 files rule is relaxed."""
    root, written = data
    count = tonic.dataset.Dataset._folder_contains_at_least_n_files_of_type
    monkeypatch.setattr(NMNIST, "_folder_contains_at_least_n_files_of_type",
                        lambda self, n, kind: count(self, 1, kind))
    monkeypatch.setattr(NMNIST, "download", lambda self: pytest.fail("tonic wanted to download"))
    ds = NMNIST(save_to=str(root), train=False)
    assert len(ds) == len(written["test"])
    events, label = ds[3]
    assert label == written["test"][3].label
    _assert_same_events(events, written["test"][3].events)


def test_download_runs_tonics_download_into_data_nmnist(tmp_path, monkeypatch):
    """download=True goes through tonic's Dataset.download (URL, file name, md5); the network part
    is replaced by unpacking a locally written archive of the real layout."""
    source = tmp_path / "archive"
    written = write_nmnist(source, n_train=10, n_test=10, seed=1)
    calls = []

    def fake_download_and_extract(url, location, filename, md5):
        calls.append((url, location, filename, md5))
        Path(location).mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "NMNIST" / filename, Path(location) / filename)
        with zipfile.ZipFile(Path(location) / filename) as z:
            z.extractall(location)

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", fake_download_and_extract)
    target = tmp_path / "data"
    ds = nm.open_nmnist(target, train=True, download=True)
    assert calls == [(NMNIST.train_url, str(target / "NMNIST"), "train.zip", NMNIST.train_md5)]
    assert len(ds) == 10
    _assert_same_events(ds[0][0], written["train"][0].events)
    nm.open_nmnist(target, train=True, download=True)           # present now: no second download
    assert len(calls) == 1


def test_failed_download_says_what_failed(tmp_path, monkeypatch):
    def offline(url, location, filename, md5):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", offline)
    with pytest.raises(OSError, match="could not download N-MNIST \\(test.zip\\).*existing copy"):
        nm.open_nmnist(tmp_path, train=False, download=True)


def test_missing_data_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        nm.open_nmnist(tmp_path / "nowhere", train=True)
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "download=True" in message and "Train" in message
    assert info.traceback[-1].path == Path(nm.__file__)           # raised by us, not deep in tonic
    write_nmnist(tmp_path / "train_only", n_train=2, n_test=2)
    shutil.rmtree(tmp_path / "train_only" / "NMNIST" / "Test")
    (tmp_path / "train_only" / "NMNIST" / "test.zip").unlink()
    assert len(nm.open_nmnist(tmp_path / "train_only", train=True)) == 2
    with pytest.raises(FileNotFoundError, match="Test"):
        nm.open_nmnist(tmp_path / "train_only", train=False)


def test_an_archive_alone_is_unpacked(tmp_path):
    written = write_nmnist(tmp_path, n_train=4, n_test=3, extracted=False)
    assert not list(tmp_path.rglob("*.bin"))
    ds = nm.open_nmnist(tmp_path, train=False)
    assert len(ds) == 3
    for i, sample in enumerate(written["test"]):
        _assert_same_events(ds[i][0], sample.events)


def test_a_folder_holding_train_and_test_directly(data, tmp_path):
    root, written = data
    shutil.copytree(root / "NMNIST" / "Test", tmp_path / "468j46mzdv-1" / "Test")
    ds = nm.open_nmnist(tmp_path / "468j46mzdv-1", train=False)
    assert [ds[i][1] for i in range(len(ds))] == [s.label for s in written["test"]]


# --- blocklist and conversion to spikes -------------------------------------------------------

def test_nest_blocklist_leaves_1196_inputs():
    blocked = nm.nest_blocklist()
    assert blocked.size == 1116 and blocked.min() == 0 and blocked.max() == 2311
    layout = nm.input_layout()
    assert layout.n_in == 1196 and (layout.width, layout.height) == (34, 34)
    assert layout.active[0] == 63                                  # NEST's first active pixel
    assert nm.input_layout(blocklist=None).n_in == 2 * 34 * 34


def test_spike_times_follow_nest(data):
    _, written = data
    layout = nm.input_layout()
    for sample in written["train"][:5]:
        times, senders = nm.sample_spikes(sample.events, layout, steps=300, offset=600.0)
        expected = _nest_spikes(sample.events, nm.nest_blocklist(), offset=600.0)
        assert sorted(zip(times.tolist(), senders.tolist())) == expected
        assert times.min() >= 601.0 and times.max() <= 901.0


def _nest_example_dir():
    spec = importlib.util.find_spec("nest")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("nest-simulator 3.10 is not installed")
    folder = Path(list(spec.submodule_search_locations)[0], "doc", "examples", "pynest", "eprop_plasticity")
    if not (folder / "eprop_supervised_classification_neuromorphic_mnist.py").is_file():
        pytest.skip("NEST's N-MNIST example is not installed")
    return folder


def test_same_spikes_as_nests_own_load_image(data):
    """NEST 3.10's load_image (taken from the installed example, not re-typed) on the written files."""
    folder = _nest_example_dir()
    tree = ast.parse((folder / "eprop_supervised_classification_neuromorphic_mnist.py").read_text())
    function = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "load_image")
    namespace = {"np": np, "duration": {"sequence": 300.0}}
    exec(compile(ast.Module([function], []), "nest_load_image", "exec"), namespace)
    blocklist = np.loadtxt(folder / "NMNIST_pixels_blocklist.txt")
    np.testing.assert_array_equal(np.sort(blocklist).astype(np.int64), nm.nest_blocklist())
    pixels = {"n_x": 34, "n_y": 34, "active": sorted(set(range(2 * 34 * 34)) - set(blocklist))}
    _, written = data
    layout = nm.input_layout()
    for sample in written["train"][:4] + written["test"][:2]:
        image = namespace["load_image"](str(sample.path), pixels)
        expected = sorted((float(t) + 1.0, n) for n, times in enumerate(image) for t in times)
        times, senders = nm.sample_spikes(sample.events, layout)
        assert sorted(zip(times.tolist(), senders.tolist())) == expected


def test_conversion_details():
    ev = np.zeros(8, NMNIST.dtype)
    pixel63 = (29, 1, 0)                       # first active pixel: input 0
    rows = [(0, 0, 0, 5000), (33, 33, 1, 6000),                   # dead pixels: dropped
            (*pixel63, 0), (*pixel63, 559), (*pixel63, 561),     # round(t*300/336040) = 0, 0, 1
            (*pixel63, 100_000), (*pixel63, 100_001),           # same ms twice: multiplicity 2
            (*pixel63, T_MAX)]                                    # -> 300 + 1
    for k, (x, y, p, t) in enumerate(rows):
        ev[k] = (x, y, t, p)
    times, senders = nm.sample_spikes(ev, nm.input_layout(), steps=300, offset=0.0)
    step = round(100_000 * 300 / T_MAX)
    assert times.tolist() == [1.0, 1.0, 2.0, step + 1.0, step + 1.0, 301.0]
    assert senders.tolist() == [0] * 6
    times_no_block, senders_no_block = nm.sample_spikes(ev, nm.input_layout(blocklist=None))
    assert times_no_block.size == 8 and set(senders_no_block.tolist()) == {0, 63, 2311}   # pixel ids


def test_samples_contain_dead_pixel_events_and_duplicates(data):
    """The written data exercise the blocklist and multiplicities."""
    _, written = data
    layout = nm.input_layout()
    sample = written["train"][0].events
    dead = [(sample["x"] == x) & (sample["y"] == y) & (sample["p"] == p) for x, y, p in DEAD]
    assert all(mask.sum() == 1 for mask in dead)
    assert np.all(layout.senders(sample[np.logical_or.reduce(dead)]) == -1)
    times, senders = nm.sample_spikes(sample, layout)
    x, y, p, t = DUPLICATE
    dup = layout.senders(np.array([(x, y, t, p)], NMNIST.dtype))[0]
    t_dup = round(t * 300 / T_MAX) + 1.0
    assert np.sum((senders == dup) & (times == t_dup)) >= 3
    assert times.size == sample.size - len(DEAD)


# --- batches, targets, window -----------------------------------------------------------------

class CountingDataset:
    """Only len() and [i] (nothing that could load everything); records each read and checks that
    the events of every earlier read are gone when the next sample is read."""

    def __init__(self, dataset):
        self.dataset, self.reads, self.alive = dataset, [], []
        self.input_layout = dataset.input_layout

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        assert all(ref() is None for ref in self.alive), "an earlier sample's events are still alive"
        self.reads.append(index)
        events, label = self.dataset[index]
        self.alive.append(weakref.ref(events))
        return events, label


def test_batches_stream_sample_by_sample(data):
    root, written = data
    ds = CountingDataset(nm.open_nmnist(root, train=True))
    batches = nm.iterate_batches(ds, batch_size=6, steps=300, seed=11)
    first = next(batches)
    assert len(ds.reads) == 6                                     # nothing read ahead
    rest = list(batches)
    assert [b.labels.size for b in [first, *rest]] == [6, 6, 6, 2]
    order = np.concatenate([b.indices for b in [first, *rest]])
    assert sorted(order.tolist()) == list(range(20)) and ds.reads == order.tolist()
    np.testing.assert_array_equal(order, nm.sample_order(20, seed=11))
    for b in [first, *rest]:
        assert b.labels.tolist() == [written["train"][i].label for i in b.indices]
        assert b.times.shape == b.senders.shape and b.senders.min() >= 0 and b.senders.max() < 1196
        assert b.times.min() >= 1.0 and b.times.max() <= b.labels.size * 300 + 1.0


def test_batches_are_reproducible_and_limited(data):
    root, _ = data
    ds = nm.open_nmnist(root, train=False)

    def run(seed, **kw):
        return list(nm.iterate_batches(ds, 4, seed=seed, **kw))

    a, b, c = run(5), run(5), run(6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.indices, y.indices)
        np.testing.assert_array_equal(x.times, y.times)
        np.testing.assert_array_equal(x.senders, y.senders)
    assert not np.array_equal(np.concatenate([x.indices for x in a]), np.concatenate([x.indices for x in c]))
    small = run(5, n_samples=6, drop_last=True)
    assert [x.labels.size for x in small] == [4]
    np.testing.assert_array_equal(small[0].indices, a[0].indices)
    in_order = run(0, shuffle=False)
    assert np.concatenate([x.indices for x in in_order]).tolist() == list(range(10))


def test_batch_timing_matches_sample_offsets(data):
    root, written = data
    ds = nm.open_nmnist(root, train=True)
    batch = next(nm.iterate_batches(ds, 3, steps=300, seed=0))
    expected = []
    for k, index in enumerate(batch.indices):
        expected += _nest_spikes(written["train"][index].events, nm.nest_blocklist(), offset=k * 300.0)
    assert sorted(zip(batch.times.tolist(), batch.senders.tolist())) == sorted(expected)


def test_targets_and_window():
    target = nm.one_hot_targets([3, 0], steps=300)
    assert target.shape == (600, 10)
    assert np.all(target[:300, 3] == 1) and np.all(target[300:, 0] == 1) and target.sum() == 600
    window = nm.learning_window(2, steps=300, window=10)
    assert window.shape == (600,) and window.sum() == 20
    assert np.all(window[290:300] == 1) and np.all(window[590:] == 1) and window[289] == 0
    with pytest.raises(ValueError):
        nm.learning_window(1, steps=5, window=6)


# --- tonic transforms -------------------------------------------------------------------------

def _has_isolated(events):
    x, y, p, t = ISOLATED
    return bool(np.any((events["x"] == x) & (events["y"] == y) & (events["p"] == p) & (events["t"] == t)))


def test_denoise_drops_isolated_events(data):
    root, _ = data
    plain = nm.open_nmnist(root, train=True)
    clean = nm.open_nmnist(root, train=True, denoise_us=50_000)
    for i in range(4):
        raw, denoised = plain[i][0], clean[i][0]
        assert _has_isolated(raw) and not _has_isolated(denoised)
        assert 0 < denoised.size < raw.size
    x, y, p, t = ISOLATED
    times, senders = nm.sample_spikes(plain[0][0], plain.input_layout)
    assert np.any((senders == 0) & (times == round(t * 300 / T_MAX) + 1))   # pixel 63 is input 0
    times, senders = nm.sample_spikes(clean[0][0], clean.input_layout)
    assert not np.any(senders == 0)


def test_downsample_changes_the_inputs(data):
    root, written = data
    ds = nm.open_nmnist(root, train=True, spatial_factor=0.5)
    layout = ds.input_layout
    assert (layout.width, layout.height) == (17, 17)
    native = nm.input_layout()
    assert nm.input_layout(0.5, blocklist=None).n_in == 2 * 17 * 17
    assert native.n_in > layout.n_in > 0
    events, _ = ds[0]
    assert events["x"].max() <= 16 and events["y"].max() <= 16
    np.testing.assert_array_equal(events["x"], written["train"][0].events["x"] // 2)
    batch = next(nm.iterate_batches(ds, 4, seed=0))
    assert batch.senders.max() < layout.n_in
    # a downsampled pixel is an input iff one of its native pixels is: (0,0,0)..(1,1,0) are all dead
    assert layout.senders(np.array([(0, 0, 0, 0)], NMNIST.dtype))[0] == -1
    with pytest.raises(ValueError):
        nm.input_layout(spatial_factor=2.0)


def test_first_saccade_only_is_tonics(data):
    root, _ = data
    ds = nm.open_nmnist(root, train=True, first_saccade_only=True)
    events, _ = ds[0]
    assert events.size > 0 and events["t"].max() < 100_000
