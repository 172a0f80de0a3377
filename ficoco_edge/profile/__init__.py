"""Profiler: the paper's cost tables recomputed, physical costs, GPU measurements, device predictions.

Modules (torch, transformers, bitsandbytes and matplotlib are imported inside functions):

- `paper`     the paper's Tables 8 and 9, recomputed cell by cell with the reason for each difference
- `footprint` resident bytes: weights as loaded, KV cache, prefill activation peak
- `devices`   device profiles (`profiles/devices/*.toml`) and live memory via jtop on a Jetson
- `roofline`  TTFT / decode ceilings, fits-or-not, largest batch and context
- `tables`    rows per method x quant for the llmviewer and physical modes and for a device
- `gpu`, `measure`  measured mode on a CUDA GPU (random-weight or checkpoint LLaVA, bitsandbytes)
- `run`       `profile_report`: one JSON-ready report; `report` renders it; `plots` draws PNGs
"""
