#!/usr/bin/env bash
# Builds the kubelet-less test cluster of tests/kube from the Go module proxy into $1 (no dl.k8s.io or GitHub here):
# kube-apiserver, kube-controller-manager, kube-scheduler and etcd in one `go build` (they share most packages),
# and kwok (stands in for the kubelet), all named with their version (kube-apiserver-v1.33.13, etcd-v3.5.21, ...).
# Versions: sagaz_lakehouse/versions.py KUBE_TEST_CLUSTER. Idempotent: builds only what is missing.
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces k8s.io/api, client-go, ... with ./staging folders),
# so a scratch module requires it and replaces every staging module with its published v0.<minor>.<patch> release;
# etcd is the package main of go.etcd.io/etcd/server/v3 (the version kubernetes' go.mod requires), built in the
# same module so it gets exactly kubernetes' dependency versions. Flags follow hack/lib/golang.sh and version.sh
# (CGO_ENABLED=0, tags selinux,notest, the version stamped with -X). kwok is built from its own release go.mod
# (`go install`): building it in the kubernetes module would upgrade grpc, cel-go, ... under kube-apiserver.
set -euo pipefail
BIN="${1:?usage: kube.sh BIN_DIR}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
pins="$(cd "$here" && python3 -c 'from sagaz_lakehouse import versions as v
c = v.KUBE_TEST_CLUSTER; print(c["kubernetes"], c["etcd"], c["kwok"])')"
read -r KUBE ETCD KWOK <<<"$pins"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
KUBE_CMDS=(kube-apiserver kube-controller-manager kube-scheduler)

need_kube=0
for name in "${KUBE_CMDS[@]/%/-$KUBE}" "etcd-$ETCD"; do [ -x "$BIN/$name" ] || need_kube=1; done
need_kwok=0; [ -x "$BIN/kwok-$KWOK" ] || need_kwok=1
[ "$need_kube" -eq 0 ] && [ "$need_kwok" -eq 0 ] && exit 0
[ -x "$GO" ] || { echo "kube.sh: Go not found (looked for go on PATH and /usr/local/go/bin/go)" >&2; exit 1; }
mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0

if [ "$need_kube" -eq 1 ]; then
  started=$SECONDS
  echo "building ${KUBE_CMDS[*]} $KUBE and etcd $ETCD from the Go module proxy" \
       "(one time, about 7 minutes on 2 cores) ..." >&2
  mkdir "$work/mod" && cd "$work/mod"
  kmod="$("$GO" mod download -json "k8s.io/kubernetes@$KUBE" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  grep -q "go.etcd.io/etcd/server/v3 $ETCD\b" "$kmod" \
    || { echo "kube.sh: k8s.io/kubernetes $KUBE does not require etcd server $ETCD (see its go.mod)" >&2; exit 1; }
  staging="v0.${KUBE#v1.}"  # v1.33.13 -> v0.33.13, the tag of every staging module
  {
    printf 'module sagaz.local/kubetools\n\ngo %s\n\n' "$(sed -n 's/^go //p' "$kmod")"  # kubernetes' language version
    printf 'require (\n\tk8s.io/kubernetes %s\n' "$KUBE"
    printf '\tgo.etcd.io/etcd/server/v3 %s\n)\n\n' "$ETCD"
    sed -n "s#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 $staging#p" "$kmod"
  } > go.mod
  pkgs=(go.etcd.io/etcd/server/v3)
  for cmd in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'; printf '\t_ "%s"\n' "${pkgs[@]}"; printf ')\n'; } > tools.go
  "$GO" mod tidy
  minor="${KUBE#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  mkdir out
  "$GO" build -trimpath -tags selinux,notest -ldflags "$ldflags" -o out "${pkgs[@]}"
  for cmd in "${KUBE_CMDS[@]}"; do mv "out/$cmd" "$BIN/$cmd-$KUBE"; done
  mv out/server "$BIN/etcd-$ETCD"  # go names the binary of go.etcd.io/etcd/server/v3 "server"
  echo "built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s" >&2
fi

if [ "$need_kwok" -eq 1 ]; then
  started=$SECONDS
  echo "building kwok $KWOK from the Go module proxy (one time, about 3 minutes on 2 cores) ..." >&2
  GOBIN="$work/kwok" "$GO" install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK#v}" "sigs.k8s.io/kwok/cmd/kwok@$KWOK"
  mv "$work/kwok/kwok" "$BIN/kwok-$KWOK"
  echo "built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s" >&2
fi
