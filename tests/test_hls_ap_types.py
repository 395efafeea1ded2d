"""The C simulation's ap_fixed headers are found (the hls4ml wheel of the test extra), and a wrong
override says what is missing."""
import pytest

import eprop_gen as eg
from eprop_gen.hls.ap_types import ap_types_dir


def test_headers_come_with_the_test_extra(monkeypatch):
    monkeypatch.delenv("EPROP_GEN_AP_TYPES", raising=False)
    directory = ap_types_dir()
    assert (directory / "ap_fixed.h").is_file() and (directory / "ap_int.h").is_file()
    assert "Apache License" in (directory / "ap_fixed.h").read_text()[:2000]


def test_an_override_without_headers_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("EPROP_GEN_AP_TYPES", str(tmp_path))
    with pytest.raises(eg.EpropGenError, match="holds no ap_fixed.h"):
        ap_types_dir()
