#!/usr/bin/env bash
# Puts a data set under data/ (git-ignored). Idempotent: does nothing when the files are there.
#   scripts/get-data.sh fashion-mnist   Debian's dataset-fashion-mnist (60,000 + 10,000 images)
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
    echo "usage: scripts/get-data.sh fashion-mnist|cifar10" >&2
    exit 2
    ;;
esac
