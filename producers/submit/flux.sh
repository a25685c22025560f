#!/bin/bash
# lammps-stream: ${runs} submitted to Flux, one job per planned run.
# Run it inside a Flux instance (`flux batch -N1 ${script}` or `flux alloc`), or submit it
# with `lammps-stream submit flux`. Job {cc} runs line {cc} of ${plan_file} on ${ranks}
# tasks; Flux's PMI starts the MPI ranks, rank 0 publishes the RunRecord to Kafka.
set -euo pipefail
# every setting is in the job's own configuration (written at submission, the task's
# timeout cut to fit the time limit): settings exported in the submitting shell, which
# the scheduler passes on and which would win over the file, are dropped
unset $$(compgen -e | grep '^LAMMPS_STREAM_' || true)
export LAMMPS_STREAM_CONFIG=${config_file}
export OMP_NUM_THREADS=${threads}
# waitable: `flux job wait --all` waits only for jobs submitted so; without it the script
# would end at once and, with it, the Flux instance and every run.
flux submit --flags=waitable --cc=0-${last_index} --ntasks=${ranks} --cores-per-task=${threads} \
    --time-limit=${time_limit_minutes}m --job-name=${job_name} \
    --output=${job_dir}/flux-{cc}.out \
    ${command}
flux job wait --all
