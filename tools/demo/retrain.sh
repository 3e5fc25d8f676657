#!/bin/sh
# retrain.sh — retrains the demo model (models/demo) end to end, in one go or across several
# sittings: data and tokenizer, the three trainings, export, parity fixtures, the sampling
# sweep, the final export, the parity fixtures, the loss curves and the evaluation. Run from anywhere; paths are relative to the
# repository.
#
#   tools/demo/retrain.sh            # a fresh run (refuses if build/demo_train exists)
#   tools/demo/retrain.sh --resume   # continue a run that was stopped, at its last checkpoint
#
# Every stage is resumable: the trainers checkpoint every CKPT_MIN minutes and continue exactly
# from there with --resume (step-based schedules, saved optimiser and random state); a stage
# whose output exists is skipped. The step counts below were sized from trial runs on a 2-core
# machine (docs/demo-model.md, "Retraining"): the data and DalleBart on one core while the
# VQGAN and then CLIP train on the other.
# PYTHON: the interpreter with tools/demo/requirements.txt (default: the venv .venv-demo,
# created here when missing). Logs: build/demo_train/*.log.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TRAIN=build/demo_train
# Sizes (wall seconds a step in a fresh run on a 2-core machine, bfloat16 autocast, both
# trainings at once: DalleBart 4.8 at 128 captions × 256 codes with the sampled loss, the
# VQGAN 0.94 at 4 images of 128×128, CLIP 0.25 at 96 pairs): 2 h 8 min of DalleBart on the
# first core, 1 h 47 min of VQGAN then 26 min of CLIP on the second, then about 15 minutes
# of build, sweep, fixtures and evaluation (docs/demo-model.md, the eleventh v2 run). When
# the second core is done first (a resumed run), DalleBart goes on with two threads. 128
# captions a step: DalleBart learns the held-out pairs better the more captions a step, at
# the same captions in all (docs/demo-model.md, the fifth and sixth v2 runs).
N_DATA=${N_DATA:-100000}    # DalleBart training scenes
BART_STEPS=${BART_STEPS:-1600}
BART_BS=${BART_BS:-128}
BART_ACCUM=${BART_ACCUM:-1}  # parts a DalleBart step is split into (train_bart.py --accum)
BART_LR=${BART_LR:-2e-3}     # DalleBart peak learning rate and warm-up steps
BART_WARMUP=${BART_WARMUP:-200}
BART_SEED=${BART_SEED:-}     # DalleBart's initialisation and batch order (unset: train_bart.py's)
BART_ENC_LAYERS=${BART_ENC_LAYERS:-}  # text encoder layers (unset: train_bart.py's, 2)
VQGAN_STEPS=${VQGAN_STEPS:-6800}
VQGAN_BS=${VQGAN_BS:-4}
CLIP_STEPS=${CLIP_STEPS:-6000}
CLIP_BS=${CLIP_BS:-96}
CKPT_MIN=${CKPT_MIN:-3}
SWEEP=${SWEEP:-2:1:1,4:1:1,8:1:1,16:1:1,8:0.8:1}
EVAL_ARGS=${EVAL_ARGS:-}    # e.g. "--limit 2 --random 2" for a quick look

case "${1:-}" in
--resume) ;;
"")
    if [ -e "$TRAIN" ]; then
        echo "retrain.sh: $TRAIN exists; continue it with --resume, or remove it to start again" >&2
        exit 2
    fi
    ;;
*)
    echo "usage: tools/demo/retrain.sh [--resume]" >&2
    exit 2
    ;;
esac
mkdir -p "$TRAIN"

if [ -z "${PYTHON:-}" ]; then
    if [ ! -x .venv-demo/bin/python ]; then
        python3 -m venv .venv-demo
        .venv-demo/bin/pip install -r tools/demo/requirements.txt
        .venv-demo/bin/pip install --no-deps taming-transformers==0.0.1
    fi
    PYTHON=.venv-demo/bin/python
fi
say() { echo "== $(date -u +%H:%M:%S) $*"; }

# 1.–2. one core: captions → BPE and scenes → exact codes, then DalleBart; the other core: the
# VQGAN, then CLIP (neither needs the prepared data), after which DalleBart takes both cores
# (its trainer reads the thread count from $TRAIN/threads once that file exists)
say "train: prepare $N_DATA scenes, DalleBart $BART_STEPS steps | VQGAN $VQGAN_STEPS steps, CLIP $CLIP_STEPS steps"
(
    if [ ! -f "$TRAIN/bart/data.npz" ]; then
        $PYTHON tools/demo/train_bart.py prepare --out "$TRAIN/bart" --n "$N_DATA" >"$TRAIN/prepare.log" 2>&1
    fi
    $PYTHON tools/demo/train_bart.py train --out "$TRAIN/bart" --steps "$BART_STEPS" --bs "$BART_BS" \
        --accum "$BART_ACCUM" --lr "$BART_LR" --warmup "$BART_WARMUP" ${BART_SEED:+--seed "$BART_SEED"} \
        ${BART_ENC_LAYERS:+--encoder-layers "$BART_ENC_LAYERS"} --ckpt-min "$CKPT_MIN" \
        --threads-file "$TRAIN/threads" --resume >>"$TRAIN/bart.log" 2>&1
) &
first=$!
(
    $PYTHON tools/demo/train_vqgan.py --out "$TRAIN/vqgan" --steps "$VQGAN_STEPS" --bs "$VQGAN_BS" \
        --ckpt-min "$CKPT_MIN" --resume >>"$TRAIN/vqgan.log" 2>&1
    $PYTHON tools/demo/train_clip.py --out "$TRAIN/clip" --steps "$CLIP_STEPS" --bs "$CLIP_BS" \
        --ckpt-min "$CKPT_MIN" --resume >>"$TRAIN/clip.log" 2>&1
    echo 2 >"$TRAIN/threads"
) &
second=$!
failed=0
wait "$first" || failed=1
wait "$second" || failed=1
tail -n 1 "$TRAIN/bart.log" "$TRAIN/clip.log" "$TRAIN/vqgan.log"
if [ "$failed" = 1 ]; then
    echo "retrain.sh: a training failed (logs above); fix it and run again with --resume" >&2
    exit 1
fi

# 3. the C build, a first export, the sampling sweep on it
make -j2 build/dalle-cli >"$TRAIN/make.log" 2>&1
if [ ! -f "$TRAIN/sweep.json" ]; then
    say "export (provisional sampling) and sweep $SWEEP"
    $PYTHON tools/demo/export.py --train "$TRAIN" --out "$TRAIN/model"
    # shellcheck disable=SC2086 # EVAL_ARGS is a list of options
    $PYTHON tools/demo/eval.py --model "$TRAIN/model" --sweep "$SWEEP" --grid "" \
        --out "$TRAIN/sweep.json" $EVAL_ARGS >"$TRAIN/sweep.log" 2>&1
fi
sweep_field() { $PYTHON -c 'import json, sys; print(json.load(open(sys.argv[1]))["sweep"][sys.argv[2]])' "$TRAIN/sweep.json" "$1"; }
best=$(sweep_field best_args)
if [ -z "$best" ]; then
    echo "retrain.sh: no setting of the sweep meets the accuracy bars (see $TRAIN/sweep.log); models/demo unchanged" >&2
    exit 1
fi
if [ "$(sweep_field meets_all)" != True ]; then
    echo "retrain.sh: $best meets the accuracy bars but not every variety bar (see $TRAIN/sweep.log)" >&2
fi

# 4. the model, its parity fixtures, the evaluation and the picture grid
say "export models/demo with $best"
# shellcheck disable=SC2086 # $best is a list of options
$PYTHON tools/demo/export.py --train "$TRAIN" --out models/demo $best
$PYTHON tools/demo/gen_demo_golden.py >"$TRAIN/golden.log" 2>&1
cp "$TRAIN/bart/bart_log.csv" "$TRAIN/vqgan/vqgan_log.csv" "$TRAIN/clip/clip_log.csv" tools/demo/logs/
$PYTHON tools/demo/plot_losses.py
# shellcheck disable=SC2086
$PYTHON tools/demo/eval.py --cli build/dalle-cli $EVAL_ARGS >"$TRAIN/eval.log" 2>&1
tail -n 3 "$TRAIN/eval.log"
say "done"
