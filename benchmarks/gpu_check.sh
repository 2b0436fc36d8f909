#!/usr/bin/env bash
# One-GPU check, under 8 minutes on an H100/H200: prints
#   1. ViT-B/32 fp16 image embedding throughput (random weights, generated JPEGs): data + model with the
#      JPEGs decoded on the CPU and on the GPU (nvJPEG), and the model alone;
#   2. exact kNN (k=30, d=512): 1M x 50k and 1M x 1M, float32 vs float16 candidates + float32 re-rank;
#   3. a 1M-pair LEMoN_FIX run end to end (synthetic data: generation timed apart; targets: embedding
#      >= 5,000 images/s including decoding, 1M pairs scored after embedding in <= 30 s).
#
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]     (runs this checkout's code; OUT_DIR default: a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${1:-$(mktemp -d)}"
mkdir -p "$OUT"
start=$(date +%s)
step() { echo; echo "== $1  ($(($(date +%s) - start)) s elapsed)"; }

python - <<'EOF'
import torch
assert torch.cuda.is_available(), "no CUDA device: this check needs one GPU"
p = torch.cuda.get_device_properties(0)
print(f"GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB; torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
nproc | sed 's/^/CPU cores: /'

step "1. ViT-B/32 fp16 image embedding, random weights, 16,384 generated 256 px JPEGs"
timeout 240 python benchmarks/bench_embed.py --device cuda --precision fp16 \
    --model open_clip:ViT-B-32/random --n 16384 --batch_size 512 \
    --num_workers "$(nproc)" --decode cpu gpu

step "2. exact kNN, 1M queries x 50k and x 1M reference (self-search), k=30"
timeout 200 python benchmarks/bench_knn.py --device cuda --queries 1000000 \
    --reference 50000 1000000 --backends torch torch_fp16

step "3. 1M synthetic pairs, LEMoN_FIX end to end (val/test 125k each, reference 50k)"
t0=$(date +%s)
timeout 150 python -c "from lemon.data.synthetic import synthetic_store; synthetic_store('$OUT/cache', 1000000)"
echo "synthetic arrays generated in $(($(date +%s) - t0)) s (CPU; not part of the scoring target)"
timer=()
if [ -x /usr/bin/time ]; then timer=(/usr/bin/time -f "run_lemon: wall %e s, peak RSS %M KB"); fi
t0=$(date +%s)
"${timer[@]}" timeout 240 python -m run_lemon --dataset synthetic --n_synthetic 1000000 --lemon_fix \
    --cache_dir "$OUT/cache" --output_dir "$OUT/run_1m" --overwrite
echo "run_lemon: $(($(date +%s) - t0)) s wall"
python - "$OUT/run_1m" <<'EOF'
import json, sys
m = json.load(open(f"{sys.argv[1]}/metrics.json"))
h = json.load(open(f"{sys.argv[1]}/hparams.json"))
t = {k.split("/", 1)[1]: round(v, 2) for k, v in m.items() if k.startswith("time/")}
print(f"stages (s): {t}")
print(f"scored after embedding (fit + score, kNN included): {t['fit_s'] + t['score_s']:.1f} s; "
      f"reading the embeddings: {t['load_features_s']:.1f} s")
print(f"search: {h.get('knn_search')} ({h.get('knn_reason')}); "
      f"recall@30 vs float32 on {m.get('search/knn_recall_sample')} queries: "
      f"{m.get('search/knn_recall_at_k')}")
print(f"test AUROC {m['test/AUROC']:.4f}")
EOF
step "done; outputs in $OUT"
