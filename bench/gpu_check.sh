#!/usr/bin/env bash
# The GPU checks of docs/training.md and docs/ingestion.md, run on a lent GPU machine (the workplace's device tool):
# embedding throughput through ragtune's embedder (bench/embed_gpu.py) and the wall time per step of the GRPO and
# PPO runs of recipes/grpo.toml (bench/train_rl_speed.py).
#
# That machine has torch but no network and no copy of the models, so a payload is carried to it in parts (each
# call carries at most 64 MiB): the SmolLM2 GGUF, all-MiniLM-L6-v2 (fp16 safetensors), the SciFact chunk texts
# (bench/embed_gpu.py export) and the pure-Python packages of this venv it lacks (+ cp312 wheels of the compiled
# ones). Earlier calls leave their parts in /root/stash; this script, run by the last call, joins them with
# .gpu/parts/*, checks the sha256, unpacks and measures. Usage: bench/gpu_check.sh SHA256 OUT_DIR [STEPS]
set -euo pipefail
sha=$1 out=$2 steps=${3:-30}
mkdir -p /root/stash /root/gpu
cp .gpu/parts/* /root/stash/ 2>/dev/null || true
cat $(ls /root/stash/p* | sort) > /root/payload.tgz
echo "$sha  /root/payload.tgz" | sha256sum -c -
tar -xzf /root/payload.tgz -C /root/gpu
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /root/gpu/wheels /root/gpu/whl/*.whl $(ls .gpu/parts/*.whl 2>/dev/null)
export PYTHONPATH="$PWD/src:/root/gpu/wheels:/root/gpu/site" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers, trl, peft, ragtune.train.ppo; print(torch.__version__, transformers.__version__, trl.__version__, peft.__version__)"
[ -n "${SKIP_EMBED:-}" ] || python3 bench/embed_gpu.py measure --chunks /root/gpu/chunks.jsonl.gz --model /root/gpu/minilm \
  --batch 64 --batch 256 --batch 1024 --out "$out/embed_gpu.json"
python3 bench/train_rl_speed.py --steps "$steps" --model /root/gpu/SmolLM2-135M-Instruct.Q4_1.gguf \
  --out "$out/train_rl_gpu.json" 2>&1 | grep -v "it/s\]" | tail -60
