#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for tests/test_slurm.py (Debian 12 packages).
#   cluster.sh install   install slurm-wlm, slurmctld, slurmd, slurm-client, munge if missing
#   cluster.sh start     start munged, slurmctld and slurmd with a minimal config in $STATE
#   cluster.sh stop      stop the daemons this script started (and nothing else)
# The config goes to /etc/slurm/slurm.conf (the default path: the SLURM executor's job steps
# drop SLURM_CONF from their environment), marked as ours; an existing config of anyone else's
# is never touched. No accounting database: AccountingStorageType=accounting_storage/none.
set -euo pipefail
STATE=${PAGROB_SLURM_STATE:-/tmp/pagrob-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by pagrob tests/workflow/slurm/cluster.sh"

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null; then
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends slurm-wlm slurmctld slurmd slurm-client munge
}

start() {
  mkdir -p "$STATE"/{spool,ctld,log,munge}
  chown munge:munge "$STATE/munge"
  host=$(hostname -s)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
  cpus=$(nproc)
  if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    echo "$CONF exists and is not ours: refusing to touch this machine's SLURM" >&2
    return 3
  fi
  mkdir -p "$(dirname "$CONF")"
  cat > "$CONF" <<CONF
$MARK
ClusterName=pagrob-test
SlurmctldHost=$host
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket.2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  # munged as user munge, with its socket in our state folder
  runuser -u munge -- /usr/sbin/munged --socket="$STATE/munge/munge.socket.2" \
    --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed"
  /usr/sbin/slurmctld
  /usr/sbin/slurmd
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -q idle; then
      return 0
    fi
    sleep 1
  done
  echo "the test cluster did not come up; logs in $STATE/log" >&2
  tail -n 20 "$STATE"/log/*.log "$STATE"/munge/munged.log >&2 || true
  return 1
}

stop() {
  for pidfile in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munge/munged.pid"; do
    if [ -s "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
  done
  sleep 1
  if [ -e "$CONF" ] && grep -qF "$MARK" "$CONF"; then
    rm -f "$CONF"
  fi
}

"$1"
