#!/bin/bash
# lammps-stream: ${runs} submitted to Flux, one job per planned run.
# Run it inside a Flux instance (`flux batch -N1 ${script}` or `flux alloc`), or submit it
# with `lammps-stream submit flux`. Each `submit_run I RANKS THREADS` below submits line I
# of ${plan_file} as a job of RANKS tasks of THREADS cores (the ranks and threads that line
# plans); Flux's PMI starts the MPI ranks, rank 0 publishes the RunRecord to Kafka.
set -euo pipefail
# every setting is in the job's own configuration (written at submission, the task's
# timeout cut to fit the time limit): settings exported in the submitting shell, which
# the scheduler passes on and which would win over the file, are dropped
unset $$(compgen -e | grep '^LAMMPS_STREAM_' || true)
export LAMMPS_STREAM_CONFIG=${config_file}
# waitable: `flux job wait --all` waits only for jobs submitted so; without it the script
# would end at once and, with it, the Flux instance and every run.
submit_run() {
    OMP_NUM_THREADS="$$3" flux submit --flags=waitable --ntasks="$$2" --cores-per-task="$$3" \
        --time-limit=${time_limit_minutes}m --job-name=${job_name} \
        --output=${job_dir}/flux-"$$1".out \
        ${command}
}
${submissions}
flux job wait --all
