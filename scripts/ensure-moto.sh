# Sourced by scripts/test.sh and scripts/demo-s3.sh: makes `moto_server`
# (PyPI moto[server], a real S3 implementation that checks signatures,
# honours If-None-Match and lists parts) and a `python3` with boto3 the
# first on PATH. Installs them into a venv under ~/.cache when missing.
# Needs python3 with venv support (apt: python3, python3-venv).
ensure_moto() {
    if command -v moto_server >/dev/null 2>&1 && python3 -c 'import boto3, moto' 2>/dev/null; then
        return 0
    fi
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/cis490-moto"
    if [ ! -x "$venv/bin/moto_server" ]; then
        echo "== installing moto[server] into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q 'moto[server]>=5.1,<6'
    fi
    export PATH="$venv/bin:$PATH"
}
