#!/bin/bash
# Multi-node avssl-train under SLURM: one torchrun per node, c10d rendezvous on the first node,
# a checkpoint and a requeue when the time limit nears or the job is preempted, --resume on
# every (re)start. Submit with `sbatch examples/slurm_train.sh`; edit the #SBATCH lines, TASK,
# CONFIG, MANIFEST and RUN (a directory every node sees) first.
#
# How the stop works (docs/training.md, "Preemption"):
#   * 120 s before the time limit SLURM sends SIGUSR1 to this batch shell (B:USR1@120); the trap
#     turns it into SIGTERM for the job's steps (scancel --signal=TERM: every torchrun). torchrun
#     passes SIGTERM on to its workers (and gives them 30 s before SIGKILL); avssl-train finishes
#     its current step, all ranks agree on that step, rank 0 writes RUN/checkpoint.pt, and every
#     worker exits with status 75 (avssl.train.EXIT_PREEMPTED). Then this script requeues the job.
#     (SIGUSR1 itself is not sent to torchrun: it does not handle it and would die.)
#   * On preemption SLURM sends SIGTERM to everything at once (PreemptMode=REQUEUE with a
#     GraceTime): the same path, and SLURM requeues the job itself.
#   * A requeued job starts this script again; --resume continues from the checkpoint (it starts
#     from scratch when there is none yet), exactly where the run stopped.
#
#SBATCH --job-name=avssl-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

set -u
TASK=${TASK:-shuffle_learn}
CONFIG=${CONFIG:-configs/shuffle_learn_ucf101.yaml}
MANIFEST=${MANIFEST:-/shared/prep/ucf101/split1/shuffle_learn.jsonl}
RUN=${RUN:-/shared/runs/${TASK}}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
PORT=${PORT:-29500}

head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
echo "$(date -u +%FT%TZ) job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on" \
    "$SLURM_NNODES nodes, rendezvous $head:$PORT"

stopping=0
warned() {  # the time-limit warning: checkpoint now, then requeue below
    echo "$(date -u +%FT%TZ) SIGUSR1: time limit near, asking avssl-train to checkpoint"
    stopping=1
    scancel --signal=TERM "$SLURM_JOB_ID"
}
trap warned USR1
trap 'stopping=1' TERM  # preempted: the steps got SIGTERM too; wait for their checkpoint

srun --kill-on-bad-exit=0 torchrun \
    --nnodes="$SLURM_NNODES" --nproc_per_node="$GPUS_PER_NODE" \
    --rdzv_backend=c10d --rdzv_endpoint="$head:$PORT" --rdzv_id="$SLURM_JOB_ID" \
    -m avssl.cli train "$TASK" --config "$CONFIG" \
    --set data.manifest="$MANIFEST" --out "$RUN" --resume &
pid=$!
# `wait` returns early when a trapped signal arrives: wait again until srun itself is done
while true; do
    wait "$pid"
    status=$?
    kill -0 "$pid" 2>/dev/null || break
done

if [ "$stopping" = 1 ] || [ "$status" = 75 ]; then
    echo "$(date -u +%FT%TZ) stopped with a checkpoint in $RUN (status $status): requeueing"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
fi
echo "$(date -u +%FT%TZ) finished with status $status"
exit "$status"
