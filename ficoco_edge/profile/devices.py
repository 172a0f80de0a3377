"""Device profiles: `profiles/devices/*.toml` read into frozen dataclasses, and live memory on a Jetson.

A profile holds what a roofline and a memory-fit check need, each figure from a vendor document
named in its `source` line:

    name             = "NVIDIA Jetson Orin Nano 8GB"
    source           = "https://... (what each figure comes from)"
    memory_gib       = 8.0      # physical memory the model can live in (GiB = 2^30 bytes)
    reserved_gib     = 1.5      # taken by the OS / display / CUDA context before the model loads
    bandwidth_gbs    = 68.0     # peak DRAM bandwidth, GB/s (1e9 bytes/s)
    peak_fp16_tflops = 10.2     # dense FP16 tensor throughput, 1e12 ops/s (a multiply-add = 2)
    peak_int8_tops   = 20.5     # dense INT8 tensor throughput, 1e12 ops/s
    unified_memory   = true     # CPU and GPU share the memory (Jetson, CPU) or not (discrete GPU)
"""

from __future__ import annotations

import math

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ficoco_edge.arch import profile_folder, profile_names, resolve_profile
from ficoco_edge.errors import UsageError

GIB = 2**30


@dataclass(frozen=True)
class DeviceProfile:
    """One machine's memory, bandwidth and peak dense tensor throughput (see module docstring)."""

    key: str
    name: str
    source: str
    memory_gib: float
    reserved_gib: float
    bandwidth_gbs: float
    peak_fp16_tflops: float
    peak_int8_tops: float
    unified_memory: bool
    notes: str = ""

    @property
    def usable_bytes(self) -> int:
        """Bytes a model may use: memory_gib - reserved_gib, in bytes."""
        return int((self.memory_gib - self.reserved_gib) * GIB)

    def peak_ops(self, compute: str) -> float:
        """Peak ops/s for compute precision 'fp16' or 'int8'."""
        if compute == "int8":
            return self.peak_int8_tops * 1e12
        return self.peak_fp16_tflops * 1e12

    @property
    def bandwidth_bytes(self) -> float:
        """Peak bandwidth in bytes/s."""
        return self.bandwidth_gbs * 1e9


@dataclass(frozen=True)
class LiveMemory:
    """Memory read from the running machine (bytes) and what read it."""

    total_bytes: int
    used_bytes: int
    reader: str

    @property
    def free_bytes(self) -> int:
        return self.total_bytes - self.used_bytes


_FLOATS = ("memory_gib", "reserved_gib", "bandwidth_gbs", "peak_fp16_tflops", "peak_int8_tops")
_REQUIRED = {"name", "source", "unified_memory", *_FLOATS}


def devices_dir() -> Path:
    return profile_folder("devices")


def available_devices() -> list[str]:
    """Names accepted by `load_device`, sorted."""
    return profile_names("devices")


def load_device(name_or_path: str | Path) -> DeviceProfile:
    """Read a device profile by name (`jetson-orin-nano-8gb`) or by path to a `.toml` file."""
    path = resolve_profile(str(name_or_path), "devices", "device")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read device profile {path}: {exc}") from exc
    return device_from_dict(path.stem, data, str(path))


def device_from_dict(key: str, data: dict, where: str = "device profile") -> DeviceProfile:
    """Validate a parsed TOML table into a DeviceProfile (UsageError names what is wrong)."""
    missing = sorted(_REQUIRED - data.keys())
    extra = sorted(data.keys() - _REQUIRED - {"notes"})
    if missing or extra:
        raise UsageError(f"{where}: missing {missing}, unknown {extra}; expected {sorted(_REQUIRED)} (+ notes)")
    values = {}
    for field in _FLOATS:
        value = data[field]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            raise UsageError(f"{where}: {field} must be a finite non-negative number, got {value!r}")
        values[field] = float(value)
    if values["reserved_gib"] >= values["memory_gib"] or min(values["bandwidth_gbs"], values["peak_fp16_tflops"]) <= 0:
        raise UsageError(f"{where}: need reserved_gib < memory_gib and positive bandwidth and peak ops")
    if not isinstance(data["unified_memory"], bool):
        raise UsageError(f"{where}: unified_memory must be true or false")
    return DeviceProfile(key, str(data["name"]), str(data["source"]), unified_memory=data["unified_memory"],
                         notes=str(data.get("notes", "")), **values)


def read_live_memory() -> LiveMemory | None:
    """Memory of the machine this runs on, read with jtop (jetson-stats) when it is importable.

    Returns None off a Jetson (no `jtop` module) or when the jtop service does not answer.
    jtop reports kB in `jetson.memory['RAM']['tot' | 'used']`.
    """
    try:
        from jtop import jtop  # optional: only on a Jetson with jetson-stats installed
    except ImportError:
        return None
    try:
        with jtop() as jetson:
            ram = jetson.memory["RAM"]
            return LiveMemory(int(ram["tot"]) * 1024, int(ram["used"]) * 1024, "jtop (jetson-stats)")
    except Exception:  # noqa: BLE001 - a missing jtop service must not stop a prediction
        return None
