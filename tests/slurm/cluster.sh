#!/usr/bin/env bash
# A real single-node SLURM on 127.0.0.1 for the integration test, without systemd.
#   cluster.sh start STATE_DIR   install (Debian packages) if needed, start munged, slurmctld, slurmd;
#                                prints `export SLURM_CONF=...` for the caller
#   cluster.sh stop STATE_DIR    stop only the daemons this script started, by their PID files
# Configuration lives in STATE_DIR (SLURM_CONF points there), so /etc/slurm is left alone.
set -euo pipefail
cmd=${1:?usage: cluster.sh start|stop STATE_DIR}
state=$(mkdir -p "${2:?STATE_DIR}" && cd "$2" && pwd)
conf=$state/slurm.conf

alive() { # pid file -> 0 if that process runs (a zombie counts as dead)
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -d /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status 2>/dev/null
}

stop() {
    for name in slurmd slurmctld munged; do
        local pidfile=$state/$name.pid
        if alive "$pidfile"; then
            kill "$(cat "$pidfile")" || true
            for _ in $(seq 50); do alive "$pidfile" || break; sleep 0.1; done
            alive "$pidfile" && kill -9 "$(cat "$pidfile")" || true
        fi
        rm -f "$pidfile"
    done
    if [ -s "$state/munge_dir" ]; then rm -rf "$(cat "$state/munge_dir")" "$state/munge_dir"; fi
    if [ -s "$state/etc_link" ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$(cat "$state/etc_link")" ]; then
        rm -f /etc/slurm/slurm.conf "$state/etc_link"
    fi
}

start() {
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
        [ "$(id -u)" = 0 ] || { echo "cluster.sh: SLURM is not installed and installing it needs root" >&2; exit 1; }
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge >/dev/null
    fi
    mkdir -p "$state/spool" "$state/ctld" "$state/log"
    # munge: its own socket, PID and log in a directory the munge user can reach (STATE_DIR may sit
    # under a private temporary directory), and the key the package created
    local key=/etc/munge/munge.key munge
    [ -s $key ] || { echo "cluster.sh: $key missing (reinstall the munge package)" >&2; exit 1; }
    [ -s "$state/munge_dir" ] || mktemp -d /tmp/brainot-munge.XXXXXX >"$state/munge_dir"
    munge=$(cat "$state/munge_dir")
    chmod 0755 "$munge" && chown munge "$munge"
    if ! alive "$state/munged.pid"; then
        runuser -u munge -- /usr/sbin/munged --force --socket="$munge/munge.socket" \
            --pid-file="$munge/munged.pid" --log-file="$munge/munged.log"
        for _ in $(seq 50); do [ -s "$munge/munged.pid" ] && break; sleep 0.1; done
        cp "$munge/munged.pid" "$state/munged.pid"
    fi
    local node
    node=$(slurmd -C | head -1 | sed -E 's/ UpTime.*//')
    node="${node%% RealMemory=*} RealMemory=$(( $(slurmd -C | sed -nE 's/.*RealMemory=([0-9]+).*/\1/p') - 1024 ))"
    local host
    host=$(hostname -s)
    cat >"$conf" <<CONF
ClusterName=brainot-test
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
AuthInfo=socket=$munge/munge.socket
CryptoType=crypto/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
MinJobAge=600
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=brainot Nodes=ALL Default=NO MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF=$conf
    # Job steps do not inherit SLURM_CONF (slurmstepd resets it), so srun inside a batch job reads
    # /etc/slurm/slurm.conf: point it at this cluster unless the machine has a configuration of its own.
    if [ ! -e /etc/slurm/slurm.conf ]; then
        mkdir -p /etc/slurm && ln -s "$conf" /etc/slurm/slurm.conf && echo "$conf" >"$state/etc_link"
    elif [ "$(readlink /etc/slurm/slurm.conf)" != "$conf" ]; then
        echo "cluster.sh: /etc/slurm/slurm.conf exists and is not ours; not touching it (jobs may not find this cluster)" >&2
    fi
    alive "$state/slurmctld.pid" || /usr/sbin/slurmctld -f "$conf"
    alive "$state/slurmd.pid" || /usr/sbin/slurmd -f "$conf"
    for _ in $(seq 100); do
        scontrol ping 2>/dev/null | grep -q UP && [ "$(sinfo -h -N -o %T 2>/dev/null | head -1)" = idle ] && break
        sinfo -h -N -o %T 2>/dev/null | grep -q -E 'down|drain' && scontrol update NodeName="$host" State=RESUME 2>/dev/null || true
        sleep 0.3
    done
    [ "$(sinfo -h -N -o %T | head -1)" = idle ] || { echo "cluster.sh: node not idle: $(sinfo -N)" >&2; exit 1; }
    echo "export SLURM_CONF=$conf"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) echo "usage: cluster.sh start|stop STATE_DIR" >&2; exit 2 ;;
esac
