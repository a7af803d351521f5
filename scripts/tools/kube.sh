#!/usr/bin/env bash
# Builds the test clusters of tests/kubernetes from the Go module proxy into $1 (no dl.k8s.io or GitHub here):
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl and etcd from one scratch module
# (they share most packages), kwok (stands in for the kubelet in the API-server tests) and CoreDNS (cluster DNS of the
# real single-node cluster), all named with their version (kube-apiserver-v1.33.13, kubelet-v1.33.13, ...).
# Versions: sagaz_lakehouse/versions.py KUBE_TEST_CLUSTER. Idempotent: builds only what is missing.
#
# k8s.io/kubernetes cannot be `go install`ed (its go.mod replaces k8s.io/api, client-go, ... with ./staging folders),
# so a scratch module requires it and replaces every staging module with its published v0.<minor>.<patch> release;
# etcd is the package main of go.etcd.io/etcd/server/v3 (the version kubernetes' go.mod requires), built in the
# same module so it gets exactly kubernetes' dependency versions. Flags follow hack/lib/golang.sh and version.sh
# (CGO_ENABLED=0, tags selinux,notest, the version stamped with -X). kwok and CoreDNS are built with their own
# release's dependency versions (kwok with `go install`, CoreDNS in a scratch module of its own that picks the
# plugins): building them in the kubernetes module would upgrade grpc, cel-go, ... under kube-apiserver.
# Builds run at the lowest CPU priority (nice 19): the machine is shared.
set -euo pipefail
BIN="${1:?usage: kube.sh BIN_DIR}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
pins="$(cd "$here" && python3 -c 'from sagaz_lakehouse import versions as v
c = v.KUBE_TEST_CLUSTER; print(c["kubernetes"], c["etcd"], c["kwok"], c["coredns"], c["kube-router"])')"
read -r KUBE ETCD KWOK COREDNS KUBE_ROUTER <<<"$pins"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
GO=(nice -n 19 "$GO")
ALL_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

KUBE_CMDS=()  # the kubernetes commands still missing
for cmd in "${ALL_CMDS[@]}"; do [ -x "$BIN/$cmd-$KUBE" ] || KUBE_CMDS+=("$cmd"); done
need_etcd=0; [ -x "$BIN/etcd-$ETCD" ] || need_etcd=1
need_kube=0; { [ "${#KUBE_CMDS[@]}" -gt 0 ] || [ "$need_etcd" -eq 1 ]; } && need_kube=1
need_kwok=0; [ -x "$BIN/kwok-$KWOK" ] || need_kwok=1
need_coredns=0; [ -x "$BIN/coredns-$COREDNS" ] || need_coredns=1
need_router=0; [ -x "$BIN/kube-router-$KUBE_ROUTER" ] || need_router=1
PAUSE="pause-sagaz-1"  # the pod sandbox's process; bump the suffix when its source below changes
need_pause=0; [ -x "$BIN/$PAUSE" ] || need_pause=1
[ "$need_kube" -eq 0 ] && [ "$need_kwok" -eq 0 ] && [ "$need_coredns" -eq 0 ] && [ "$need_pause" -eq 0 ] \
  && [ "$need_router" -eq 0 ] && exit 0
[ -x "${GO[-1]}" ] || { echo "kube.sh: Go not found (looked for go on PATH and /usr/local/go/bin/go)" >&2; exit 1; }
mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0

if [ "$need_kube" -eq 1 ]; then
  started=$SECONDS
  echo "building ${KUBE_CMDS[*]} $KUBE$([ "$need_etcd" -eq 1 ] && echo " and etcd $ETCD") from the Go module" \
       "proxy (one time, about 7 minutes for the control plane and 6 for kubelet and kube-proxy on 2 idle cores) ..." >&2
  mkdir "$work/mod" && cd "$work/mod"
  kmod="$("${GO[@]}" mod download -json "k8s.io/kubernetes@$KUBE" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  grep -q "go.etcd.io/etcd/server/v3 $ETCD\b" "$kmod" \
    || { echo "kube.sh: k8s.io/kubernetes $KUBE does not require etcd server $ETCD (see its go.mod)" >&2; exit 1; }
  staging="v0.${KUBE#v1.}"  # v1.33.13 -> v0.33.13, the tag of every staging module
  {
    printf 'module sagaz.local/kubetools\n\ngo %s\n\n' "$(sed -n 's/^go //p' "$kmod")"  # kubernetes' language version
    printf 'require (\n\tk8s.io/kubernetes %s\n' "$KUBE"
    printf '\tgo.etcd.io/etcd/server/v3 %s\n)\n\n' "$ETCD"
    sed -n "s#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 $staging#p" "$kmod"
  } > go.mod
  # Every command in tools.go (one dependency graph for all of them), only the missing ones built.
  every=(go.etcd.io/etcd/server/v3)
  for cmd in "${ALL_CMDS[@]}"; do every+=("k8s.io/kubernetes/cmd/$cmd"); done
  { printf '//go:build tools\n\npackage tools\n\nimport (\n'; printf '\t_ "%s"\n' "${every[@]}"; printf ')\n'; } \
    > tools.go
  "${GO[@]}" mod tidy
  pkgs=()
  [ "$need_etcd" -eq 1 ] && pkgs+=(go.etcd.io/etcd/server/v3)
  for cmd in "${KUBE_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  minor="${KUBE#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBE -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  done
  mkdir out
  "${GO[@]}" build -trimpath -tags selinux,notest -ldflags "$ldflags" -o out "${pkgs[@]}"
  for cmd in "${KUBE_CMDS[@]}"; do mv "out/$cmd" "$BIN/$cmd-$KUBE"; done
  # go names the binary of go.etcd.io/etcd/server/v3 "server"
  [ "$need_etcd" -eq 0 ] || mv out/server "$BIN/etcd-$ETCD"
  echo "built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s" >&2
fi

if [ "$need_kwok" -eq 1 ]; then
  started=$SECONDS
  echo "building kwok $KWOK from the Go module proxy (one time, about 3 minutes on 2 cores) ..." >&2
  GOBIN="$work/kwok" "${GO[@]}" install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK#v}" "sigs.k8s.io/kwok/cmd/kwok@$KWOK"
  mv "$work/kwok/kwok" "$BIN/kwok-$KWOK"
  echo "built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s" >&2
fi

if [ "$need_coredns" -eq 1 ]; then
  started=$SECONDS
  echo "building CoreDNS $COREDNS from the Go module proxy (one time, about 2 minutes on 2 cores) ..." >&2
  # Only the plugins the node's Corefile uses (tests/kubernetes/node.py), the way CoreDNS documents a custom build: a main
  # package that imports coremain and the chosen plugins (upstream's own main imports core/plugin, i.e. all 50+,
  # with the cloud providers' SDKs). The scratch module requires the release, so every dependency is at the
  # version of CoreDNS's own go.mod.
  mkdir "$work/coredns" && cd "$work/coredns"
  printf 'module sagaz.local/coredns\n\ngo 1.22\n' > go.mod
  cat > main.go <<'GO'
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func main() { coremain.Run() }
GO
  "${GO[@]}" get "github.com/coredns/coredns@$COREDNS"
  "${GO[@]}" mod tidy
  "${GO[@]}" build -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS" -o coredns .
  mv coredns "$BIN/coredns-$COREDNS"
  echo "built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s" >&2
fi

if [ "$need_router" -eq 1 ]; then
  started=$SECONDS
  echo "building kube-router $KUBE_ROUTER from the Go module proxy (one time, about 2 minutes on 2 cores) ..." >&2
  # Its go.mod has no replace directives, so `go install` builds it with its own release's dependency versions;
  # the version stamped as upstream's Makefile does. The binary runs all of kube-router; the real node starts only
  # its NetworkPolicy controller (tests/kubernetes/node.py).
  pkg=github.com/cloudnativelabs/kube-router/v2
  GOBIN="$work/kube-router" "${GO[@]}" install -trimpath -ldflags "-s -w -X $pkg/pkg/version.Version=$KUBE_ROUTER \
    -X $pkg/pkg/version.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$pkg/cmd/kube-router@$KUBE_ROUTER"
  mv "$work/kube-router/kube-router" "$BIN/kube-router-$KUBE_ROUTER"
  echo "built in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s" >&2
fi

if [ "$need_pause" -eq 1 ]; then
  # The process of every pod sandbox (what registry.k8s.io/pause runs; no registry here): sleeps until SIGTERM or
  # SIGINT, and reaps zombies as PID 1. The real cluster of tests/kubernetes packs it into the sandbox image itself.
  mkdir "$work/pause" && cd "$work/pause"
  printf 'module sagaz.local/pause\n\ngo 1.22\n' > go.mod
  cat > main.go <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	child := make(chan os.Signal, 8)
	signal.Notify(child, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-child:
			for {
				if pid, _ := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 {
					break
				}
			}
		}
	}
}
GO
  "${GO[@]}" build -trimpath -ldflags "-s -w" -o "$BIN/$PAUSE" .
fi
