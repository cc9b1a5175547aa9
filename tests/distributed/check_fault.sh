#!/usr/bin/env bash
# Runs fault_rank under mpirun (2 ranks) in mode $3 and checks that the job ends within 30 s with
# a failure naming the rank that failed (or, for stall, the rank left waiting). Collectives time
# out after 2 s here. Usage: check_fault.sh MPIEXEC FAULT_RANK exit|vanish|throw|stall
set -uo pipefail
mpiexec=$1 program=$2 mode=$3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export EMBER_DISTRIBUTED_TIMEOUT=2
start=$(date +%s)
output=$(timeout 60 "$mpiexec" -np 2 --oversubscribe "$program" "$mode" 2>&1)
status=$?
elapsed=$(( $(date +%s) - start ))
echo "$output"
echo "check_fault: mode $mode, mpirun exit status $status after $elapsed s"
if [ "$status" -eq 124 ]; then echo "FAIL: the job hung (killed after 60 s)"; exit 1; fi
if [ "$status" -eq 0 ]; then echo "FAIL: the job reported success"; exit 1; fi
if [ "$elapsed" -gt 30 ]; then echo "FAIL: the job took more than 30 s to stop"; exit 1; fi
case "$mode" in
  throw) pattern="rank 1 of 2 is leaving with an exception in flight" ;;
  # mpirun names the process that failed and stops the others.
  exit) pattern="Process name: [[" ; pattern2="],1]" ;;
  vanish) pattern="process rank 1 with PID" ;;
  # rank 0 gives up on the collective rank 1 never joins, after EMBER_DISTRIBUTED_TIMEOUT.
  stall) pattern="rank 0 of 2 waited 2 s for all_reduce" ;;
esac
if ! grep -qiF "$pattern" <<<"$output" || ! grep -qiF "${pattern2:-$pattern}" <<<"$output"; then echo "FAIL: the output does not name the failed rank ('$pattern')"; exit 1; fi
echo "PASS"
