"""Device profiles: every shipped profile loads with a source; validation; jtop when present."""

import sys
import types

import pytest

from ficoco_edge.errors import UsageError
from ficoco_edge.profile.devices import available_devices, device_from_dict, load_device, read_live_memory

SHIPPED = {"jetson-orin-nano-8gb": True, "jetson-orin-nano-super": True, "jetson-agx-orin-64gb": True,
           "rtx-4090": False, "h100-sxm": False, "cpu-generic": True}


def test_shipped_profiles():
    assert set(SHIPPED) <= set(available_devices())
    for key, unified in SHIPPED.items():
        d = load_device(key)
        assert d.unified_memory is unified
        assert "http" in d.source
        assert 0 < d.reserved_gib < d.memory_gib and d.bandwidth_gbs > 0
        assert d.peak_int8_tops >= d.peak_fp16_tflops > 0


def test_vendor_figures():
    nano, sup, agx = (load_device(k) for k in ("jetson-orin-nano-8gb", "jetson-orin-nano-super", "jetson-agx-orin-64gb"))
    assert (nano.bandwidth_gbs, sup.bandwidth_gbs, agx.bandwidth_gbs) == (68.0, 102.0, 204.8)
    assert nano.peak_int8_tops * 2 == pytest.approx(40, abs=1.5)  # 40 sparse INT8 TOPS
    assert sup.peak_int8_tops * 2 == pytest.approx(67, abs=1.5)   # 67 sparse
    assert agx.peak_int8_tops * 2 == pytest.approx(170, abs=1)    # GPU share of 275
    assert load_device("h100-sxm").peak_fp16_tflops * 2 == pytest.approx(1979, abs=1)


def test_profile_by_path(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('name = "x"\nsource = "https://example.com"\nmemory_gib = 16\nreserved_gib = 2\n'
                    'bandwidth_gbs = 100\npeak_fp16_tflops = 20\npeak_int8_tops = 40\nunified_memory = true\n')
    assert load_device(str(path)).key == "mine"


@pytest.mark.parametrize("change, needle", [({"memory_gib": "8"}, "memory_gib"), ({"reserved_gib": 9}, "reserved"),
                                            ({"unified_memory": 1}, "unified_memory"), ({"extra": 1}, "unknown"),
                                            ({"memory_gib": float("nan")}, "memory_gib"),
                                            ({"bandwidth_gbs": float("inf")}, "bandwidth_gbs")])
def test_bad_profiles(change, needle):
    data = {"name": "x", "source": "s", "memory_gib": 8, "reserved_gib": 1, "bandwidth_gbs": 68,
            "peak_fp16_tflops": 10, "peak_int8_tops": 20, "unified_memory": True, **change}
    with pytest.raises(UsageError, match=needle):
        device_from_dict("x", data)


def test_unknown_device_lists_the_valid_names():
    with pytest.raises(UsageError, match="jetson-orin-nano-8gb"):
        load_device("jetson-thor")


def test_live_memory_needs_jtop(monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)  # import fails
    assert read_live_memory() is None


def test_live_memory_from_jtop(monkeypatch):
    class FakeJtop:
        memory = {"RAM": {"tot": 7_620_000, "used": 1_500_000, "shared": 0}}  # kB

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setitem(sys.modules, "jtop", types.SimpleNamespace(jtop=FakeJtop))
    live = read_live_memory()
    assert (live.total_bytes, live.used_bytes, live.free_bytes) == (7_620_000 * 1024, 1_500_000 * 1024, 6_120_000 * 1024)
