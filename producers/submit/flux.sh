#!/bin/bash
# lammps-stream: ${runs} submitted to Flux, one job per planned run.
# Run it inside a Flux instance (`flux batch -N1 ${script}` or `flux alloc`), or submit it
# with `lammps-stream submit flux`. Job {cc} runs line {cc} of ${plan_file} on ${ranks}
# tasks; Flux's PMI starts the MPI ranks, rank 0 publishes the RunRecord to Kafka.
set -euo pipefail
export LAMMPS_STREAM_CONFIG=${config_file}
export OMP_NUM_THREADS=${threads}
flux submit --cc=0-${last_index} --nslots=${ranks} --cores-per-slot=${threads} \
    --time-limit=${time_limit_minutes}m --job-name=${job_name} \
    --output=${job_dir}/flux-{cc}.out \
    ${command}
flux job wait --all
