#!/usr/bin/env bash
# A throwaway one-node SLURM cluster on this machine, so that `make test-cluster` can submit the demo
# DAG through the slurm profile without a real cluster:
#
#   workflow/cluster/slurm-single-node.sh start    # install (apt), configure, start; wait for an idle node
#   workflow/cluster/slurm-single-node.sh status   # the daemons it started and what sinfo says
#   workflow/cluster/slurm-single-node.sh stop     # cancel its jobs, stop its daemons, remove its state
#
# Exit codes: 0 done; 77 this machine cannot host one (not root, or no SLURM and no apt-get): the
# caller reports "skipped" with the line printed; 1 anything else (the log to read is printed).
# Needs root because munged, slurmctld and slurmd run as system daemons here (no systemd: they are
# started directly, which also works in containers).
set -euo pipefail

SKIP=77
NAME=$(basename "$0")
RUN_DIR=/run/adfm-slurm             # pid files; its existence means "this script started a cluster"
STATE_DIR=/var/lib/adfm-slurm       # slurmctld state and slurmd spool, removed by `stop`
LOG_DIR=/var/log/adfm-slurm         # kept after `stop`, for a failed run's post-mortem
CONF_DIR=/etc/slurm                 # where Debian's sinfo/sbatch look, so no SLURM_CONF is needed
MARKER="# written by adfm-repro workflow/cluster/slurm-single-node.sh"
HOST=$(hostname -s)

say() { echo "$NAME: $*"; }
die() { say "$*" >&2; exit 1; }
skip() { say "skipped: $*"; exit "$SKIP"; }

# /proc rather than `kill -0`, which fails for a user other than the daemon's (status as non-root)
pid_alive() { [[ -s $1 ]] && [[ -d /proc/$(cat "$1") ]]; }

# `sinfo` answering means a controller is reachable (ours or the site's).
slurm_reachable() { command -v sinfo >/dev/null && timeout 10 sinfo -h >/dev/null 2>&1; }

node_state() { timeout 10 sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n1 || true; }

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || skip "SLURM is not installed and there is no apt-get to install it"
    say "installing slurm-wlm and munge (apt-get)"
    # the packages' own service start-up needs systemd, which may be absent: their daemons are
    # started below, so a failed service start during configuration is harmless
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >"$LOG_DIR/apt.log" 2>&1 || die "apt-get update failed, see $LOG_DIR/apt.log"
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >>"$LOG_DIR/apt.log" 2>&1 \
        || die "apt-get install slurm-wlm munge failed, see $LOG_DIR/apt.log"
}

write_config() {
    local conf=$CONF_DIR/slurm.conf
    # never overwrite a site's configuration: only files this script wrote are rewritten
    for file in "$conf" "$CONF_DIR/gres.conf"; do
        if [[ -e $file ]] && ! grep -qxF "$MARKER" "$file"; then
            die "$file exists and was not written by this script; not touching it"
        fi
    done
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    # slurmd drains a node that declares more memory than it finds, and the OS (and whoever else
    # uses this machine) needs some: declare 10% (at least 1 GiB) less
    mem_mb=$((mem_mb - (mem_mb / 10 > 1024 ? mem_mb / 10 : 1024)))
    mkdir -p "$CONF_DIR"
    cat >"$conf" <<EOF
$MARKER
ClusterName=adfm
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
# no cgroup or systemd needed (containers, CI machines)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# jobs that ask for no memory would otherwise get the whole node
DefMemPerCPU=1000
GresTypes=gpu
# no slurmdbd: job states come from slurmctld's memory (squeue, scontrol), which keeps finished
# jobs for MinJobAge seconds, long enough for a test run to inspect them afterwards
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
# a node that was down (slurmd restarted) comes back by itself once it registers
ReturnToService=2
# a cancelled job's retry waits less: SIGKILL 10 s after SIGTERM, not 30
KillWait=10
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP
EOF
    # File=/dev/null: a GPU that SLURM can allocate (and export as CUDA_VISIBLE_DEVICES=0) on a
    # machine without one, enough to test how jobs request and receive GPUs
    cat >"$CONF_DIR/gres.conf" <<EOF
$MARKER
NodeName=$HOST Name=gpu File=/dev/null
EOF
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return  # a munged is already serving (the system's, or ours from an earlier start)
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        install -d -o munge -g munge -m 700 /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    # munged refuses keys and directories that others can read or write
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    runuser -u munge -- munged || die "munged did not start, see /var/log/munge/munged.log"
    cp /run/munge/munged.pid "$RUN_DIR/munged.pid"  # ours: `stop` ends it
    for _ in $(seq 20); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.5
    done
    die "munged started but does not answer, see /var/log/munge/munged.log"
}

wait_for_idle() {
    local state="" started=$SECONDS
    while ((SECONDS < started + 60)); do
        # a daemon that dies at start-up (bad configuration) has already said why in its log
        for daemon in slurmctld slurmd; do
            if ((SECONDS > started + 5)) && ! pid_alive "$RUN_DIR/$daemon.pid"; then
                tail -n 5 "$LOG_DIR/$daemon.log" >&2 || true
                die "$daemon exited, see $LOG_DIR/$daemon.log"
            fi
        done
        state=$(node_state)
        case $state in
            idle | mixed | allocated) return ;;
        esac
        sleep 1
    done
    timeout 10 sinfo -R >&2 || true
    die "node $HOST is '${state:-unknown}' after 60 s, not idle; see $LOG_DIR/slurmctld.log and slurmd.log"
}

start() {
    if [[ -d $RUN_DIR ]] && pid_alive "$RUN_DIR/slurmctld.pid" && pid_alive "$RUN_DIR/slurmd.pid"; then
        wait_for_idle
        say "already running: node $HOST $(node_state)"
        return
    fi
    # a site's cluster (or one another user started) is used as it is
    if { [[ ! -d $RUN_DIR ]] || [[ $(id -u) != 0 ]]; } && slurm_reachable; then
        say "a SLURM cluster is already reachable (sinfo answers); using it, starting nothing"
        return
    fi
    [[ $(id -u) == 0 ]] || skip "no SLURM cluster reachable (sinfo fails) and not root, so none can be started here"
    [[ -r /proc/meminfo ]] || skip "not a Linux machine (no /proc/meminfo)"
    mkdir -p "$LOG_DIR"
    install_packages
    # a cluster this script started earlier and that died (reboot, killed daemons): start afresh
    if [[ -d $RUN_DIR ]]; then stop_daemons; fi
    rm -rf "$STATE_DIR"
    mkdir -p "$RUN_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd"
    write_config
    start_munge
    # -c: no jobs or node states from an earlier cluster
    slurmctld -c || die "slurmctld did not start, see $LOG_DIR/slurmctld.log"
    slurmd || die "slurmd did not start, see $LOG_DIR/slurmd.log"
    wait_for_idle
    say "started: node $HOST ($(nproc) CPUs, gpu:1 on /dev/null), partitions cpu (default) and gpu;" \
        "logs in $LOG_DIR; stop with: $0 stop"
}

stop_pid_file() {
    local file=$1
    pid_alive "$file" || { rm -f "$file"; return; }
    local pid
    pid=$(cat "$file")
    kill "$pid"
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return; }
        sleep 0.5
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$file"
}

stop_daemons() {
    # slurmd before slurmctld (no node-down noise), munged last (both authenticate through it)
    stop_pid_file "$RUN_DIR/slurmd.pid"
    stop_pid_file "$RUN_DIR/slurmctld.pid"
    stop_pid_file "$RUN_DIR/munged.pid"
}

stop() {
    if [[ ! -d $RUN_DIR ]]; then
        say "nothing to stop (no cluster started by this script)"
        return
    fi
    [[ $(id -u) == 0 ]] || die "the cluster was started by root; stop it as root"
    # jobs still running would outlive slurmd as orphaned slurmstepd processes
    if pid_alive "$RUN_DIR/slurmctld.pid"; then
        local jobs
        mapfile -t jobs < <(timeout 10 squeue -h -o %i 2>/dev/null || true)
        ((${#jobs[@]} == 0)) || timeout 20 scancel "${jobs[@]}" 2>/dev/null || true
        for _ in $(seq 30); do
            [[ -z $(timeout 10 squeue -h -t RUNNING,COMPLETING -o %i 2>/dev/null) ]] && break
            sleep 1
        done
    fi
    stop_daemons
    rm -rf "$RUN_DIR" "$STATE_DIR"
    say "stopped; configuration left in $CONF_DIR, logs in $LOG_DIR"
}

status() {
    local code=0
    for daemon in munged slurmctld slurmd; do
        if pid_alive "$RUN_DIR/$daemon.pid"; then
            say "$daemon running, pid $(cat "$RUN_DIR/$daemon.pid")"
        else
            say "$daemon not running (as started by this script)"
        fi
    done
    if slurm_reachable; then
        timeout 10 sinfo
    else
        say "sinfo: no SLURM controller reachable"
        code=3  # LSB's "not running"
    fi
    return $code
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
