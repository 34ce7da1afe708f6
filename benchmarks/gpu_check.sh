#!/usr/bin/env bash
# Every GPU check of the project in one device run (about 6 minutes on an H200), so a session
# that is lent a GPU spends its minutes measuring. It uses the GPU machine's own python3
# (PyTorch with CUDA, scikit-image); first, on the development machine, fetch the one wheel
# that image lacks:
#
#   ../shared/gpu/wheels.sh facenet-pytorch==2.5.3
#
# then call the device tool's run with command "bash benchmarks/gpu_check.sh", carry [".whl"]
# and timeout_s 540. Everything lands in $OUT/log.txt (and JSON files beside it): where a
# batch's time goes stage by stage (with PyTorch's profiler), whole runs with and without face
# detection, a 720p video, then the test suite (Ray's tests excluded: its wheel is too big to
# carry; CI runs them). Each step has its own time limit, so one slow step cannot eat the rest.
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
began=$(date +%s)
step() { echo; echo "== [$(($(date +%s) - began)) s] $* =="; }
site=$(mktemp -d)
python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl || exit 1
export PYTHONPATH="$site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
echo "cores: $(nproc)"
python3 -c "import torch, torchvision, cv2, PIL; print('torch', torch.__version__, \
'torchvision', torchvision.__version__, 'opencv', cv2.__version__, 'pillow', PIL.__version__)"

step "start-up: --help, and import torch + CUDA"
/usr/bin/time -f "--help: %e s" python3 -m opengraphau --help >/dev/null
/usr/bin/time -f "torch + CUDA: %e s" python3 -c "import torch; torch.zeros(1, device='cuda')"

step "stages, ResNet-50 fp16, 256 photos a batch, profiled"
timeout 120 python3 -m benchmarks.bench_stages --device cuda --precision fp16 --batch-size 256 \
    --photos 256 --rounds 2 --profile --json "$out/stages-fp16.json"
step "stages, ResNet-50 stage 2 fp32"
timeout 45 python3 -m benchmarks.bench_stages --device cuda --batch-size 256 --photos 256 \
    --rounds 2 --stages 2 --json "$out/stages-fp32.json"

step "whole runs, --no-detect"
timeout 80 python3 -m benchmarks.bench_pipeline --device cuda --precision fp16 --batch-size 256 \
    --sizes 2000 6000 --repeats 1 --rounds 2 --only no-detect --json "$out/pipeline-nodetect.json"
step "whole runs, with face detection"
timeout 80 python3 -m benchmarks.bench_pipeline --device cuda --precision fp16 --batch-size 256 \
    --sizes 1000 3000 --repeats 1 --rounds 2 --only detect --json "$out/pipeline-detect.json"

step "720p video with face detection"
timeout 60 python3 -m benchmarks.bench_video --device cuda --precision fp16 --batch-size 64 \
    --seconds 20 --arch resnet50 --size 1280 720 --json "$out/video.json"

step "tests, CUDA ones included"
timeout 150 python3 -m pytest -q -n 8 -p no:cacheprovider -m "not slow" tests \
    --ignore tests/test_ray.py --ignore tests/test_ray_cluster.py -rfE 2>&1 | tail -40
step "done"
