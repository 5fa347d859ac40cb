#!/usr/bin/env bash
# A private one-node SLURM cluster with accounting, for tests/test_slurm.py.
#
#   cluster.sh start DIR   install SLURM if needed, then start munged, MariaDB, slurmdbd,
#                          slurmctld and slurmd with every file under DIR; writes DIR/env
#   cluster.sh stop DIR    cancel the cluster's jobs, stop every daemon started by `start`
#                          (by the PIDs in DIR), wait until they are gone
#
# Exit status 77 from `start`: SLURM cannot be installed or run here (not root, no apt-get,
# apt failed, a real /etc/slurm/slurm.conf exists); the last line on stderr says why. The test
# then skips instead of failing.
#
# Private: munge key and socket, MariaDB (data, socket, free TCP port), SLURM ports, state,
# spool, logs, all under DIR. Clients find the cluster through SLURM_CONF=DIR/etc/slurm.conf,
# and, where that variable is dropped (the job step's inner srun), through a symlink
# /etc/slurm/slurm.conf -> DIR/etc/slurm.conf that lives only while the cluster runs.
# Why each piece is needed: /work/shared/notes/local-slurm.md. Known to work with Debian 12's
# SLURM 22.05 and snakemake-executor-plugin-slurm 2.8.
set -euo pipefail

CLUSTER=fastadvtest       # ClusterName
ACCOUNT=fastadv           # as in workflow/profiles/slurm/config.yaml
PARTITION=debug           # as in workflow/profiles/slurm/config.yaml
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server mariadb-client)
NEEDED=(slurmctld slurmd slurmdbd munged mungekey mariadbd mariadb-install-db mariadb-admin mariadb
        sbatch sacct sacctmgr sinfo scontrol scancel squeue)

die() { echo "cluster.sh: $*" >&2; exit 1; }
cannot() { echo "cluster.sh: no private SLURM cluster here: $*" >&2; exit 77; }

install_slurm() {
    local missing=() c
    for c in "${NEEDED[@]}"; do command -v "$c" >/dev/null || missing+=("$c"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || cannot "no apt-get (missing: ${missing[*]})"
    local log="$DIR/apt.log"
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            "${PACKAGES[@]}"; } >"$log" 2>&1; then
        cannot "apt-get install ${PACKAGES[*]} failed: $(tail -n 1 "$log")"
    fi
    for c in "${NEEDED[@]}"; do command -v "$c" >/dev/null || cannot "$c still missing after apt-get"; done
}

free_port() {  # a TCP port nobody listens on (bash's /dev/tcp connect fails), below the kernel's ephemeral
    # range: a port in it can be held by an outgoing connection without a listener, and slurmd then failed to
    # bind it ("Address already in use", CI of be8437e)
    local p low
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$low" -gt 11000 ] || die "ephemeral ports start at $low: no private range below them"
    for _ in $(seq 100); do
        p=$(( 10000 + RANDOM % (low - 10000) ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
    done
    die "no free TCP port found"
}

wait_for() {  # wait_for SECONDS WHAT CMD...: retry CMD until it succeeds
    local end=$(( SECONDS + $1 )) what=$2; shift 2
    while [ $SECONDS -lt $end ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    die "$what did not come up within ${secs}s; logs in $DIR/log"
}

daemon() {  # daemon NAME CMD...: run CMD in the foreground of a detached session, PID in DIR/pids
    local name=$1; shift
    setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo "$name $!" >>"$DIR/pids"
}

alive() {  # a zombie (exited, not yet reaped by init) counts as gone
    [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# The executor plugin's job step drops SLURM_CONF (all SLURM_* but the job's identity) before
# its inner `srun`, which then looks in /etc/slurm/slurm.conf. So that file must lead to this
# cluster while it runs: a symlink, removed by `stop`. A real slurm.conf is never touched.
SYSTEM_CONF=/etc/slurm/slurm.conf

link_system_conf() {
    if [ -L "$SYSTEM_CONF" ]; then
        local old; old=$(readlink "$SYSTEM_CONF")
        # A link left by a killed run of this script (its cluster gone) may be replaced.
        any_alive "$(dirname "$(dirname "$old")")/pids" \
            && cannot "$SYSTEM_CONF already leads to a running test cluster ($old)"
        rm -f "$SYSTEM_CONF"
    elif [ -e "$SYSTEM_CONF" ]; then
        cannot "$SYSTEM_CONF exists (a real SLURM configuration, left untouched)"
    fi
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -s "$DIR/etc/slurm.conf" "$SYSTEM_CONF"
    echo "$SYSTEM_CONF" >"$DIR/links"
}

start() {
    [ -e "$DIR/pids" ] && die "$DIR already holds a cluster (stop it first)"
    mkdir -p "$DIR"/{etc,log,run,munge,mysql,state,spool}
    # Root: to install packages, and because the daemons run as root (SlurmUser=root).
    [ "$(id -u)" -eq 0 ] || cannot "not root"
    install_slurm
    link_system_conf
    chmod 700 "$DIR/munge"
    : >"$DIR/pids"
    local host mem_mib dbport dbdport ctldport slurmdport pass
    host=$(hostname -s)
    # Below the memory free now, so slurmd does not drain the node for reporting less.
    mem_mib=$(awk '/MemAvailable/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
    dbport=$(free_port); dbdport=$(free_port); ctldport=$(free_port); slurmdport=$(free_port)
    pass=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
    local sock="$DIR/munge/munge.sock" mysock="$DIR/mysql/mysql.sock"
    [ ${#mysock} -lt 100 ] || die "$DIR is too long for a unix socket path (use a shorter temp dir)"

    # munge: private key and socket. As root munged needs --force (its socket directory is
    # not world-searchable when DIR lies under a private temp dir).
    mungekey --create --keyfile="$DIR/munge/munge.key"
    daemon munged munged --force --foreground --socket="$sock" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/run/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
    wait_for 15 munged bash -c "munge -S '$sock' -n | unmunge -S '$sock'"

    # MariaDB for slurmdbd (sacct, which the executor plugin polls, needs slurmdbd).
    mariadb-install-db --no-defaults --user=root --datadir="$DIR/mysql/data" \
        --auth-root-authentication-method=socket --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed; see $DIR/log/mariadb-install.log"
    daemon mariadbd mariadbd --no-defaults --user=root --datadir="$DIR/mysql/data" --socket="$mysock" \
        --port="$dbport" --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$DIR/run/mariadbd.pid" \
        --log-error="$DIR/log/mariadbd.log" --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900
    wait_for 30 MariaDB mariadb-admin --no-defaults --socket="$mysock" -u root ping
    mariadb --no-defaults --socket="$mysock" -u root <<EOF
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF

    # slurmdbd.conf: next to slurm.conf (found through SLURM_CONF); mode 600 or slurmdbd refuses it.
    # StorageHost must be the IP: with "localhost" the client looks for the default unix socket.
    (umask 077; cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$dbdport
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$dbport
StorageUser=slurm
StoragePass=$pass
StorageLoc=slurm_acct_db
EOF
    )
    # The node's CPUs are the machine's: nproc also honours OMP_NUM_THREADS, which the test suite sets to 1 (a
    # 1-CPU node leaves every 2-CPU job pending with reason PartitionConfig).
    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctldport
SlurmdPort=$slurmdport
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# No cgroups and no systemd here: track processes through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$dbdport
# For slurmdbd connections the munge socket is taken from here, not from AuthInfo.
AccountingStoragePass=$sock
# Jobs must name a valid account (as on real clusters); keep the plugin's rule_<name> comment.
AccountingStorageEnforce=associations
AccountingStoreFlags=job_comment
ReturnToService=2
KillWait=5
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) RealMemory=$mem_mib State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$DIR/etc/slurm.conf"
    echo "export SLURM_CONF=$SLURM_CONF" >"$DIR/env"

    daemon slurmdbd slurmdbd -D
    wait_for 30 slurmdbd timeout 10 sacctmgr -n list cluster
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=tests Organization=tests >/dev/null
    sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null

    daemon slurmctld slurmctld -D -i
    wait_for 30 slurmctld timeout 10 scontrol ping
    daemon slurmd slurmd -D -N "$host"
    wait_for 30 "an idle node" timeout 10 bash -c "sinfo -h -N -o %t | grep -qx idle"
    echo "cluster $CLUSTER up: SLURM_CONF=$SLURM_CONF"
}

any_alive() {  # any_alive PIDS_FILE: does a daemon listed there still run?
    local name pid
    [ -s "$1" ] || return 1
    while read -r name pid; do alive "$pid" && return 0; done <"$1"
    return 1
}

stop() {
    stop_daemons
    if [ -s "$DIR/links" ] && [ "$(readlink "$SYSTEM_CONF")" = "$DIR/etc/slurm.conf" ]; then
        rm -f "$SYSTEM_CONF"
    fi
    echo "cluster stopped"
}

stop_daemons() {
    [ -s "$DIR/pids" ] || return 0
    export SLURM_CONF="$DIR/etc/slurm.conf"
    local name pid
    # Jobs first, while slurmctld and slurmd can still end them cleanly.
    if grep -q '^slurmd ' "$DIR/pids" && scontrol ping >/dev/null 2>&1; then
        scancel --full --user=root 2>/dev/null || true
        for _ in $(seq 30); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
    fi
    # Reverse start order: slurmd, slurmctld, slurmdbd, MariaDB, munged.
    tac "$DIR/pids" | while read -r name pid; do
        alive "$pid" || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 60); do alive "$pid" || break; sleep 0.5; done
        if alive "$pid"; then
            echo "cluster.sh: $name ($pid) ignored SIGTERM for 30 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    mv "$DIR/pids" "$DIR/pids.stopped"
}

[ $# -eq 2 ] || die "usage: cluster.sh start|stop DIR"
DIR=$(realpath -m "$2")
case $1 in
    start) start ;;
    stop) stop ;;
    *) die "usage: cluster.sh start|stop DIR" ;;
esac
