"""The FPGA back end (issue 7), forward network: the project `eprop-gen hls` writes compiles with
g++ against the open ap_fixed headers and its test bench passes (bit-true with the CPU fixed-point
simulator), the simulator's float64 mode is the CPU engine, and what cannot go on chip is refused
with a message. (On-chip learning: not built yet; docs/design/hls.md.)"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import eprop_gen as eg
from eprop_gen.cli import main
from eprop_gen.hls.config import DEFAULT_PRECISION, load_net_config
from eprop_gen.hls.evaluate import Fixed, Float64
from eprop_gen.hls.fixed import FixedType
from eprop_gen.hls.project import on_chip_network, write_project
from eprop_gen.hls.simulate import simulate_forward
from eprop_gen.train.config import ConfigError

NET = Path(__file__).parent / "hls" / "net.toml"


def _engine_forward(chip, dt=1.0):
    """The same network in the CPU engine, static weights: recurrent spikes and readout y per step."""
    net = eg.Network(dt=dt)
    rows, senders = np.nonzero(chip.input_spikes)
    src = net.add_spike_source(chip.n_in, times=(rows + 1) * dt, senders=senders)
    config = load_net_config(NET).network
    rec_model = eg.compile_model(eg.models.path(config.recurrent.model))
    out_model = eg.compile_model(eg.models.path(config.readout.model))
    rec = net.add_population(rec_model, chip.n_rec, params=config.recurrent.params)
    out = net.add_population(out_model, chip.n_out, params=config.readout.params)
    for name, source, target in (("input", src, rec), ("recurrent", rec, rec), ("readout", rec, out)):
        p = chip.projections[name]
        s, k = np.nonzero(np.arange(p.target.shape[1])[None, :] < p.count[:, None])
        net.connect(source, target, "spikes", eg.Explicit(s, p.target[s, k], weights=p.weight[s, k]))
    net.record(out, ("y",))
    net.simulate(chip.input_spikes.shape[0] * dt)
    times, ids = net.spikes(rec)
    z = np.zeros(chip.input_spikes.shape[0:1] + (chip.n_rec,), bool)
    z[np.rint(times / dt).astype(int) - 1, ids] = True
    return z, net.recording(out)["y"]


def test_float64_mode_is_the_cpu_engine():
    chip = on_chip_network(load_net_config(NET).network)
    z, y = simulate_forward(chip.rec, chip.out, chip.n_in, chip.n_rec, chip.n_out, chip.projections,
                            chip.input_spikes, Float64())
    z_engine, y_engine = _engine_forward(chip)
    assert z.sum() > 100
    assert np.array_equal(z, z_engine)
    np.testing.assert_allclose(y, y_engine, rtol=0, atol=1e-12 * np.abs(y_engine).max())


def test_fixed_point_mode_follows_float64_and_the_precision_matters():
    config = load_net_config(NET)
    chip = on_chip_network(config.network)
    args = (chip.rec, chip.out, chip.n_in, chip.n_rec, chip.n_out, chip.projections, chip.input_spikes)
    z, y = simulate_forward(*args, Float64())
    wide = {q: FixedType.parse("ap_fixed<56,16,AP_RND_CONV,AP_SAT>") for q in DEFAULT_PRECISION}
    z_wide, y_wide = simulate_forward(*args, Fixed(wide))
    assert np.array_equal(z_wide, z) and np.abs(y_wide - y).max() < 1e-9
    z_fix, y_fix = simulate_forward(*args, Fixed(config.hls.precision))
    assert not np.array_equal(y_fix, y)                      # the default precision rounds
    narrow = dict(config.hls.precision, weight=FixedType.parse("ap_fixed<6,2,AP_TRN,AP_SAT>"))
    z_narrow, _ = simulate_forward(*args, Fixed(narrow))
    assert not np.array_equal(z_narrow, z)                   # 4 fraction bits of weight change the spikes


def test_generated_project_passes_its_c_simulation(tmp_path):
    folder = write_project(load_net_config(NET), tmp_path / "prj")
    for name in ("firmware/eprop_top.cpp", "firmware/defines.h", "tb/tb_eprop_top.cpp", "build_prj.tcl",
                 "csim.sh", "data/expected_spikes.txt", "README.md"):
        assert (folder / name).is_file(), name
    firmware = (folder / "firmware" / "eprop_top.cpp").read_text()
    assert "#pragma HLS INTERFACE axis port=spikes_in" in firmware and "#pragma HLS PIPELINE" in firmware
    readme = (folder / "README.md").read_text()
    assert "void eprop_top(" in readme and "| weight | `ap_fixed<18, 6, AP_RND_CONV, AP_SAT>` |" in readme
    done = subprocess.run([str(folder / "csim.sh")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS: 200 steps, 0 mismatches" in done.stdout
    # the comparison can fail: one wrong expected spike and the test bench says so
    expected = (folder / "data" / "expected_spikes.txt").read_text().split()
    expected[expected.index("1")] = "0"
    (folder / "data" / "expected_spikes.txt").write_text("\n".join(expected) + "\n")
    done = subprocess.run([str(folder / "csim.sh")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "FAIL" in done.stdout


def test_cli_writes_a_project_and_keeps_what_is_there(tmp_path):
    from click.testing import CliRunner
    runner = CliRunner()
    out = tmp_path / "prj"
    result = runner.invoke(main, ["hls", "eprop_iaf", "--config", str(NET), "-o", str(out), "--steps", "50"])
    assert result.exit_code == 0, result.output
    assert (out / "csim.sh").is_file()
    again = runner.invoke(main, ["hls", "eprop_iaf", "--config", str(NET), "-o", str(out)])
    assert again.exit_code == 1 and "not empty; use --force" in again.output


def test_what_cannot_go_on_chip_is_refused(tmp_path):
    text = NET.read_text().replace('model = "eprop_iaf"', 'model = "eprop_iaf_stdp"')
    stdp = tmp_path / "stdp.toml"
    stdp.write_text(text.replace("surrogate_gradient_width = 0.6", "surrogate_gradient_width = 0.6, V_reset = 0.0"))
    write_project(load_net_config(stdp), tmp_path / "ok")               # exactly solved: fine
    bad = tmp_path / "bad.toml"
    bad.write_text(NET.read_text() + '\n[hls.precision]\nweight = "ap_fixed<18,6,AP_RND_HALF>"\n')
    with pytest.raises(ConfigError, match=r"\[hls.precision\] weight"):
        load_net_config(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text(NET.read_text() + '\n[hls.precision]\nweights = "ap_fixed<18,6>"\n')
    with pytest.raises(ConfigError, match="did you mean 'weight'"):
        load_net_config(typo)


def test_other_precisions_stay_bit_true(tmp_path):
    """Truncation and wrap-around instead of the defaults' rounding and saturation, narrower
    membrane and weights: the C simulation still equals the CPU fixed-point simulator."""
    custom = tmp_path / "net.toml"
    custom.write_text(NET.read_text() + '\n[hls.precision]\nmembrane = "ap_fixed<16,6>"\n'
                      'weight = "ap_fixed<10,4,AP_TRN,AP_WRAP>"\ncoefficient = "ap_fixed<14,2,AP_RND,AP_SAT>"\n'
                      'psi = "ap_fixed<12,2,AP_RND,AP_WRAP>"\n')
    folder = write_project(load_net_config(custom), tmp_path / "prj", steps=120)
    assert "typedef ap_fixed<16, 6, AP_TRN, AP_WRAP> membrane_t;" in (folder / "firmware" / "defines.h").read_text()
    done = subprocess.run([str(folder / "csim.sh")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS: 120 steps, 0 mismatches" in done.stdout
    assert sum(map(int, (folder / "data" / "expected_spikes.txt").read_text().split())) > 50
