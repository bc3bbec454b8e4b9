#!/usr/bin/env bash
# Installs the real servers the HyperPod provider's tests run against, outside the clone so
# a machine builds them once:
#   - Slurm (slurmctld, slurmd, sbatch...), munge and sshd, from Debian's packages;
#   - etcd, from Debian's package, and kube-apiserver v1.20.2 compiled from Debian's
#     `kubernetes` source package (no Debian package ships the server binary), cached in
#     $TUNEFLEET_KUBE_HOME (default ~/.cache/tunefleet-kube).
# Needs root for apt-get; without it, or without apt, it says what is missing and exits 0:
# the tests that need a server then skip, each saying which server it lacks.
# The build recipe and why each step is there: shared/TESTING-TARGETS.md, section A.
set -euo pipefail

kube_home="${TUNEFLEET_KUBE_HOME:-$HOME/.cache/tunefleet-kube}"
kube_version="1.20.2"
# The build's cache key: the version and the revision of this recipe's patches (tf1: the
# empty-string fix below). A new patch takes a new key, so a machine rebuilds once.
kube_build="v$kube_version-tf1"
apiserver="$kube_home/$kube_build/kube-apiserver"

packages=()
command -v slurmctld >/dev/null || packages+=(slurm-wlm)
command -v munged >/dev/null || packages+=(munge)
[ -x /usr/sbin/sshd ] || packages+=(openssh-server)
command -v ssh >/dev/null || packages+=(openssh-client)
command -v etcd >/dev/null || packages+=(etcd-server)
if [ ! -x "$apiserver" ]; then
    command -v go >/dev/null || packages+=(golang-go)
    command -v rsync >/dev/null || packages+=(rsync)
    [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] \
        || packages+=(golang-github-modern-go-reflect2-dev)
fi

if [ "${#packages[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "test-servers: not root or no apt-get; missing ${packages[*]}:" \
            "the tests that need them will skip" >&2
        exit 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if [ -x "$apiserver" ]; then
    exit 0
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/tunefleet-kube-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# Debian's source package, fetched without touching the system's apt configuration.
mkdir -p "$work/apt/lists/partial" "$work/home"
printf 'deb-src http://deb.debian.org/debian bookworm main\n' >"$work/apt/sources.list"
aptopt=(-o "Dir::State::Lists=$work/apt/lists" -o "Dir::Etc::SourceList=$work/apt/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null")
apt-get "${aptopt[@]}" update -qq
(cd "$work" && apt-get "${aptopt[@]}" source --download-only -qq kubernetes)
tar -xzf "$work"/kubernetes_*.orig.tar.gz -C "$work"
src="$work/kubernetes-$kube_version"
[ -d "$src" ] || { echo "test-servers: Debian's kubernetes source is not $kube_version" >&2; exit 1; }
# The vendored reflect2 v1.0.1 makes the server built with Go >= 1.18 segfault the first time
# it encodes a large map (creating a CRD does): Debian's 1.0.2 replaces it.
rm -rf "$src/vendor/github.com/modern-go/reflect2"
mkdir "$src/vendor/github.com/modern-go/reflect2"
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
    /usr/share/gocode/src/github.com/modern-go/reflect2/*.s \
    "$src/vendor/github.com/modern-go/reflect2/"
# Go >= 1.16 makes the zero-value check of go-openapi's validator take "" for null, so the
# server refuses a CRD with `default: ""` (HyperPod's InferenceEndpointConfig has 26) and any
# object holding an empty string (kubernetes#99804; fixed upstream by kube-openapi#230 and
# go-openapi/validate#138, which this one-line change is).
for f in $(grep -rl 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data))' \
    "$src/vendor" "$src/staging" 2>/dev/null || true); do
    sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$f"
done
# GOPATH mode, as debian/rules builds it (module mode wants go.mod updates).
mkdir -p "$src/.go/src/k8s.io"
ln -s ../../.. "$src/.go/src/k8s.io/kubernetes"
(cd "$src" && GOPATH="$src/.go" GOCACHE="$work/gocache" CGO_ENABLED=0 GOPROXY=off \
    HOME="$work/home" make -s WHAT=cmd/kube-apiserver >"$work/build.log" 2>&1) || {
    tail -30 "$work/build.log" >&2
    exit 1
}
mkdir -p "$(dirname "$apiserver")"
cp "$src/_output/bin/kube-apiserver" "$apiserver.tmp"
mv "$apiserver.tmp" "$apiserver"
"$apiserver" --version
