#!/usr/bin/env bash
# Everything issue 13 measures on a GPU machine, in one call (the lent device machines have CUDA PyTorch but
# no TensorFlow, lark, pydantic or optuna: wheels for those in ./.whl, fetched beforehand with `pip download`,
# see bench/README.md). Writes its logs and JSON under ${OUT:-bench/results/gpu}.
#   bash bench/gpu_check.sh            # pytest -m gpu, then the benchmarks (~6 minutes on an H200)
set -u
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
if [ -d .whl ] || [ -d ../.whl ]; then
  WHL=$( [ -d .whl ] && echo .whl || echo ../.whl )
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHL"/*.whl && export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.version.cuda)" >> "$OUT/gpu.txt"
python3 bench/make_data.py > /dev/null
# correctness first: the CUDA runs against the CPU's, and the CUDA graphs against the eager steps
timeout 240 python3 -m pytest -q -m gpu tests/test_gpu.py -n 8 -p no:cacheprovider -rA > "$OUT/pytest_gpu.log" 2>&1
echo "pytest -m gpu: exit $?  $(tail -1 "$OUT/pytest_gpu.log")"
grep -h "captured\|eager:" "$OUT/pytest_gpu.log" | sort | uniq -c | sort -rn | head -5
V=dlc-torch,dlc-torch-graphs,torch-slicing,torch-dataloader
run() {  # name, then bench_mlp.py's arguments
  local name=$1; shift
  timeout 150 python3 bench/bench_mlp.py --device cuda --variants $V --json "$OUT/$name.json" "$@" \
    > "$OUT/$name.log" 2>&1
  echo "== $name (exit $?)"; tail -12 "$OUT/$name.log"
}
run mlp_b1024 --batch-size 1024 --epochs 6
run cnn_b1024 --spec bench/cnn.dlspec --batch-size 1024 --epochs 6
run mlp_b128 --batch-size 128 --epochs 3
