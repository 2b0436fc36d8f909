#!/usr/bin/env bash
# A real single-node Slurm on this machine, for the sweep's `slurm` launcher, its tests and CI.
#
# Usage:  bash scripts/local_slurm.sh start|stop|status
#
# start   installs the Debian packages munge, slurmctld, slurmd and slurm-client when missing
#         (apt-get update first), writes a minimal slurm.conf (one node `localhost` with this machine's CPUs
#         and memory, no accounting, no cgroups) into $LEMON_SLURM_DIR (default /tmp/lemon-slurm), starts
#         munged (as user munge), slurmctld and `slurmd -N localhost` without systemd, and waits until the
#         node accepts jobs. Idempotent: a running cluster is left alone.
# stop    stops the daemons this script started (pid files in $LEMON_SLURM_DIR).
# status  `sinfo` and `squeue` when the controller answers; exit 1 when it does not.
#
# Clients (sbatch, squeue, sinfo, submitit) find the configuration through /etc/slurm/slurm.conf, which
# becomes a link to ours when no other configuration is installed there; otherwise export
# SLURM_CONF=$LEMON_SLURM_DIR/slurm.conf (printed by `start`). There is no slurmdbd, hence no `sacct`.
# Needs root or sudo (packages, munged, slurmd). Job ids restart at 1 after `stop` + `start` because the
# state folder is recreated.
set -euo pipefail

DIR="${LEMON_SLURM_DIR:-/tmp/lemon-slurm}"
CONF="$DIR/slurm.conf"
ETC_CONF=/etc/slurm/slurm.conf
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { echo "[local_slurm] $*"; }

# a live process (zombies left by a container's init that does not reap count as gone)
alive() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null || true); [ -n "$st" ] && [ "${st:0:1}" != "Z" ]; }

pid_in() { [ -s "$1" ] && cat "$1" 2>/dev/null || true; }

controller_up() { SLURM_CONF="$CONF" timeout 5 scontrol ping 2>/dev/null | grep -q "is UP"; }

node_ready() {
    local state
    state=$(SLURM_CONF="$CONF" timeout 5 sinfo -h -N -n localhost -o %t 2>/dev/null || true)
    [[ "$state" =~ ^(idle|mix|alloc|comp) ]]
}

install_packages() {
    local missing=()
    for bin in munged slurmctld slurmd sbatch; do
        command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
    done
    if [ ${#missing[@]} -eq 0 ]; then return; fi
    log "installing munge slurmctld slurmd slurm-client (missing: ${missing[*]})"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        munge slurmctld slurmd slurm-client >/dev/null
}

start_munge() {
    local pid
    pid=$(pid_in /run/munge/munged.pid)
    if [ -n "$pid" ] && alive "$pid"; then return; fi  # already running (ours or the system's)
    $SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    if [ ! -s /etc/munge/munge.key ]; then
        log "creating /etc/munge/munge.key"
        $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    $SUDO chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
    $SUDO chmod 0700 /etc/munge /var/log/munge /var/lib/munge
    $SUDO chmod 0755 /run/munge
    $SUDO chmod 0400 /etc/munge/munge.key
    log "starting munged (user munge)"
    $SUDO rm -f /run/munge/munged.pid
    $SUDO runuser -u munge -- munged
    for _ in $(seq 1 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
    $SUDO cp /run/munge/munged.pid "$DIR/munged.pid"  # so that `stop` stops only a munged we started
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    $SUDO mkdir -p "$DIR/state" "$DIR/spool"
    $SUDO tee "$CONF" >/dev/null <<EOF
# Written by scripts/local_slurm.sh: a single-node cluster for tests and laptops.
ClusterName=lemon
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MessageTimeout=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    if [ -L "$ETC_CONF" ] || [ ! -e "$ETC_CONF" ]; then
        $SUDO mkdir -p "$(dirname "$ETC_CONF")"
        $SUDO ln -sfn "$CONF" "$ETC_CONF"
    elif ! cmp -s "$ETC_CONF" "$CONF"; then
        log "$ETC_CONF belongs to another setup; clients need: export SLURM_CONF=$CONF"
    fi
}

start() {
    if controller_up && node_ready; then
        log "already running (config $CONF)"
        return
    fi
    install_packages
    $SUDO mkdir -p "$DIR"
    start_munge
    write_conf
    if ! controller_up; then
        log "starting slurmctld"
        $SUDO rm -rf "$DIR/state" && $SUDO mkdir -p "$DIR/state"  # fresh controller: job ids restart at 1
        $SUDO slurmctld -f "$CONF"
    fi
    local pid
    pid=$(pid_in "$DIR/slurmd.pid")
    if [ -z "$pid" ] || ! alive "$pid"; then
        log "starting slurmd -N localhost"
        $SUDO slurmd -f "$CONF" -N localhost
    fi
    for _ in $(seq 1 60); do
        if controller_up && node_ready; then
            log "ready: $(SLURM_CONF="$CONF" sinfo -h -o '%P %D %t %c CPUs %m MB')"
            return
        fi
        if controller_up; then  # a node left DOWN by an earlier run comes back
            SLURM_CONF="$CONF" $SUDO scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true
        fi
        sleep 0.5
    done
    log "Slurm did not become ready within 30 s; see $DIR/slurmctld.log and $DIR/slurmd.log"
    exit 1
}

stop_pidfile() {
    local name=$1 file=$2 pid
    pid=$(pid_in "$file")
    if [ -n "$pid" ] && alive "$pid"; then
        log "stopping $name (pid $pid)"
        $SUDO kill "$pid"
        for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    fi
    $SUDO rm -f "$file"
}

stop() {
    stop_pidfile slurmd "$DIR/slurmd.pid"
    stop_pidfile slurmctld "$DIR/slurmctld.pid"
    stop_pidfile munged "$DIR/munged.pid"
}

status() {
    if ! controller_up; then
        log "not running (no controller answers for $CONF)"
        exit 1
    fi
    SLURM_CONF="$CONF" sinfo
    SLURM_CONF="$CONF" squeue
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: bash scripts/local_slurm.sh start|stop|status" >&2; exit 2 ;;
esac
