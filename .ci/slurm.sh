#!/usr/bin/env bash
# A real single-node Slurm cluster on this machine, for integration tests and CI.
#
#   .ci/slurm.sh up       install (apt, only if missing), configure and start; wait until idle
#   .ci/slurm.sh down     stop slurmd and slurmctld (munged is left running: it is cheap,
#                         shared with anything else that uses munge, and `up` reuses it)
#   .ci/slurm.sh status   sinfo
#
# `up` by a user other than root only checks that a Slurm is already up (started by root) and
# says how to start it otherwise. Runs as root on Debian 12 without systemd: the daemons are
# started directly and tracked by their pid files under /run. `up` is idempotent; if the
# generated slurm.conf changed (other host name, CPU count, ...) running daemons are restarted
# to pick it up.
#
# Layout: /etc/slurm/slurm.conf (the Debian package's compiled-in path), state in
# /var/spool/slurmctld and /var/spool/slurmd, logs in /var/log/slurm, pid files in /run/slurm.
#
# Choices, all for a throwaway CI node:
# - SlurmUser=root, jobs may run as root; no cgroups (ProctrackType=proctrack/linuxproc,
#   TaskPlugin=task/none), no accounting, MpiDefault=none.
# - The node is declared as 1 socket x N cores x 1 thread with N = max(nproc, 2), and
#   SlurmdParameters=config_overrides makes slurmd report exactly that, so the node never
#   drains over a topology or memory mismatch (containers and VMs report odd topologies) and
#   always takes at least two 1-CPU jobs, or one --ntasks=2 job, at a time.
# - RealMemory = MemTotal minus 10% (at least 512 MB) headroom; memory is not a consumable
#   resource (CR_Core), so jobs need not ask for any.
# - ReturnToService=2: a node that went down (daemons restarted) comes back by itself.
# - Quick scheduling (sched_interval, bf_interval) so job arrays start within seconds.
# - MinJobAge stays at the default 300 s. `sbatch --wait` polls after 2, 10, 42, 74, ... s
#   (it sleeps 2 s, then x4 while below MinJobAge/2, up to 32 s), so a lower MinJobAge polls
#   faster, but finished array tasks are then purged before sbatch sees them and
#   `sbatch --wait --array` exits 0 although a task failed (seen with MinJobAge=5). Tests that
#   need the result sooner can poll `squeue -h -j ID` themselves.
set -euo pipefail

CONF=/etc/slurm/slurm.conf
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
RUN=/run/slurm
MUNGE_KEY=/etc/munge/munge.key
WAIT_SECONDS=${SLURM_UP_TIMEOUT:-60}

say() { echo "slurm: $*"; }
die() {
  echo "slurm: ERROR: $*" >&2
  exit 1
}

# The pid in $1 if that process is alive and its command is $2.
alive() {
  local pid
  [[ -r $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]] && echo "$pid"
}

show_log() {
  [[ -r $1 ]] && { echo "--- last lines of $1:" >&2; tail -n 20 "$1" >&2; }
  return 0
}

install_packages() {
  if command -v sbatch >/dev/null && command -v slurmctld >/dev/null &&
    command -v slurmd >/dev/null && command -v munged >/dev/null; then
    say "packages: already installed ($(slurmctld -V))"
    return
  fi
  say "packages: installing slurm-wlm and munge with apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null ||
    die "apt-get install slurm-wlm munge failed"
  say "packages: installed $(slurmctld -V)"
}

start_munge() {
  if [[ ! -s $MUNGE_KEY ]]; then
    say "munge: creating $MUNGE_KEY"
    install -d -o munge -g munge -m 700 /etc/munge
    (umask 277 && dd if=/dev/urandom of="$MUNGE_KEY" bs=1 count=1024 status=none)
  else
    say "munge: key exists"
  fi
  chown munge:munge "$MUNGE_KEY"
  chmod 400 "$MUNGE_KEY"
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munge: munged already running"
    return
  fi
  say "munge: starting munged"
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
  # --force: start even if it finds a stale socket or permissions it dislikes.
  runuser -u munge -- munged --force || die "munged did not start; see /var/log/munge/munged.log"
  for _ in $(seq 50); do
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return
    sleep 0.1
  done
  show_log /var/log/munge/munged.log
  die "munged started but munge -n | unmunge fails"
}

write_conf() {
  local host cpus mem_mb headroom new
  host=$(hostname -s)
  [[ -n $host ]] || die "hostname -s is empty"
  cpus=$(nproc)
  ((cpus >= 2)) || cpus=2
  mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
  headroom=$((mem_mb / 10 > 512 ? mem_mb / 10 : 512))
  mem_mb=$((mem_mb - headroom > 256 ? mem_mb - headroom : 256))
  install -d -m 755 /etc/slurm "$STATE" "$SPOOL" "$LOGS" "$RUN"
  new=$(
    cat <<EOF
# Written by .ci/slurm.sh for a throwaway single-node CI cluster; do not edit.
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
ReturnToService=2
SlurmdParameters=config_overrides
MailProg=/bin/true
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  )
  NODE=$host
  if [[ -f $CONF ]] && [[ $(<"$CONF") == "$new" ]]; then
    say "config: $CONF unchanged (node $host, $cpus CPUs, ${mem_mb} MB)"
    return 1
  fi
  printf '%s\n' "$new" >"$CONF"
  chmod 644 "$CONF"
  say "config: wrote $CONF (node $host, $cpus CPUs, ${mem_mb} MB)"
  return 0
}

stop_daemon() { # name
  local pid
  pid=$(alive "$RUN/$1.pid" "$1") || { say "$1: not running"; return 0; }
  say "$1: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    [[ -d /proc/$pid ]] || { rm -f "$RUN/$1.pid"; return 0; }
    sleep 0.2
  done
  say "$1: still running after 20 s, killing"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/$1.pid"
}

start_daemon() { # name; returns 1 if it was already running
  if alive "$RUN/$1.pid" "$1" >/dev/null; then
    say "$1: already running"
    return 1
  fi
  say "$1: starting"
  "$1" || { show_log "$LOGS/$1.log"; die "$1 failed to start"; }
  for _ in $(seq 50); do
    alive "$RUN/$1.pid" "$1" >/dev/null && return
    sleep 0.2
  done
  show_log "$LOGS/$1.log"
  die "$1 exited right after starting"
}

wait_idle() { # [time slurmd was started, as %FT%T]
  local state registered resumed=-10 deadline=$((SECONDS + WAIT_SECONDS))
  say "node: waiting up to ${WAIT_SECONDS} s for $NODE to be idle"
  while ((SECONDS < deadline)); do
    state=$(sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n 1) || state=""
    if [[ -n ${1:-} ]]; then
      # After a restart slurmctld reports the node's saved state before the new slurmd has
      # registered; wait for that registration.
      registered=$(scontrol show node "$NODE" 2>/dev/null |
        sed -n 's/.*SlurmdStartTime=\([^ ]*\).*/\1/p') || registered=""
      [[ $registered > $1 || $registered == "$1" ]] || state="registering"
    fi
    case $state in
      idle | mixed | allocated | completing)
        say "node: $NODE is $state"
        return
        ;;
      down* | drain* | fail*)
        if ((SECONDS - resumed >= 5)); then
          say "node: $NODE is $state, resuming it"
          scontrol update nodename="$NODE" state=resume 2>/dev/null || true
          resumed=$SECONDS
        fi
        ;;
    esac
    sleep 1
  done
  sinfo -N -l >&2 || true
  scontrol show node "$NODE" >&2 || true
  show_log "$LOGS/slurmctld.log"
  show_log "$LOGS/slurmd.log"
  die "node $NODE not idle after ${WAIT_SECONDS} s (last state: ${state:-unknown})"
}

# Whether a Slurm is answering here with a node that takes jobs (for `up` run by a user).
already_up() {
  local state
  command -v sinfo >/dev/null || return 1
  state=$(sinfo -h -o %T 2>/dev/null | head -n 1) || return 1
  [[ $state =~ ^(idle|mixed|allocated|completing)$ ]]
}

up() {
  if [[ $EUID -ne 0 ]]; then
    if already_up; then
      say "up (already running; $(id -un) is not root, so its configuration was left as it is)"
      return
    fi
    die "Slurm is not up and idle here, and installing or starting it needs root: run '$0 up' as root once"
  fi
  install_packages
  start_munge
  if write_conf; then
    # New or changed config: daemons running with the old one must restart.
    stop_daemon slurmd
    stop_daemon slurmctld
  fi
  local now slurmd_started=""
  start_daemon slurmctld || true
  now=$(date +%FT%T)
  if start_daemon slurmd; then slurmd_started=$now; fi
  wait_idle "$slurmd_started"
  say "up"
}

down() {
  stop_daemon slurmd
  stop_daemon slurmctld
  say "down (munged left running)"
}

status() {
  command -v sinfo >/dev/null || die "sinfo not installed; run: $0 up"
  sinfo || die "slurmctld is not answering; run: $0 up"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
