#!/usr/bin/env bash
# Builds, from Debian's packages and PyPI only, a local stand-in for the AWS Lambda base image
# public.ecr.aws/lambda/python:3.12-x86_64, under that name, so that `sam local invoke --skip-pull-image` runs on a
# machine that cannot reach a container registry. It is Debian 12 (debootstrap, minbase) with:
#   /var/lang      a CPython 3.12 (pyenv's), where the real image has its own
#   /var/runtime   awslambdaric (the Lambda Runtime Interface Client), boto3 and the runtime entry (lambda_image/)
#   /usr/local/bin/aws-lambda-rie   the Runtime Interface Emulator that ships inside the aws-sam-cli package
# Not Amazon Linux 2023 and not AWS's build of Python: see README, "Invoking one function".
# Usage: build_lambda_image.sh WORK_DIR SAM_PYTHON PYTHON312       (as root; about two minutes)
set -euo pipefail

readonly IMAGE=public.ecr.aws/lambda/python:3.12-x86_64
readonly AWSLAMBDARIC_VERSION=4.2.2
readonly BOTO3_VERSION=1.44.8  # as requirements-dev.txt
readonly HERE=$(cd "$(dirname "$0")" && pwd)
work=$1 sam_python=$2 python312=$3
root=$work/image-root
# The installation itself (PATH may give a pyenv shim).
python_home=$("$python312" -c 'import sys; print(sys.base_prefix)')
python312=$python_home/bin/python3.12

# The Debian mirror this machine's apt uses (deb822 sources first, then sources.list).
debian_mirror() {
  local mirror
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  echo "${mirror:-http://deb.debian.org/debian}"
}

rie=$("$sam_python" -c 'import pathlib, samcli; print(pathlib.Path(samcli.__file__).parent / "local/rapid/aws-lambda-rie-x86_64")')
[ -x "$rie" ] || { echo "error: no aws-lambda-rie in the SAM CLI package ($rie)" >&2; exit 1; }

rm -rf "$root"
mkdir -p "$work"
echo "image: debootstrap bookworm (minbase) from $(debian_mirror)" >&2
debootstrap --variant=minbase --include=libssl3,libsqlite3-0,libreadline8,libexpat1,libffi8,zlib1g,libbz2-1.0,liblzma5 \
  bookworm "$root" "$(debian_mirror)" >"$work/debootstrap.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
mkdir -p "$root/var/lang" "$root/var/runtime" "$root/var/task" "$root/opt" "$root/usr/local/bin"

echo "image: CPython from $python_home at /var/lang" >&2
rsync -a --exclude 'lib/python3.12/test/' --exclude 'lib/python3.12/idlelib/' --exclude 'lib/python3.12/tkinter/' \
  --exclude 'lib/python3.12/turtledemo/' --exclude 'lib/python3.12/site-packages/*' "$python_home/" "$root/var/lang/"
echo "image: awslambdaric $AWSLAMBDARIC_VERSION and boto3 $BOTO3_VERSION at /var/runtime" >&2
"$python312" -m pip install --quiet --disable-pip-version-check --no-compile --target "$root/var/runtime" \
  "awslambdaric==$AWSLAMBDARIC_VERSION" "boto3==$BOTO3_VERSION" "botocore==$BOTO3_VERSION"
install -m 0755 "$HERE/lambda_image/bootstrap" "$root/var/runtime/bootstrap"
install -m 0644 "$HERE/lambda_image/runtime_main.py" "$root/var/runtime/runtime_main.py"
install -m 0755 "$HERE/lambda_image/lambda-entrypoint.sh" "$root/lambda-entrypoint.sh"
install -m 0755 "$rie" "$root/usr/local/bin/aws-lambda-rie"
echo /var/lang/lib >"$root/etc/ld.so.conf.d/var-lang.conf"
chroot "$root" ldconfig
# The runtime must import in the image as it is, with nothing of this machine's environment.
env -i PATH=/usr/bin:/bin PYTHONPATH=/var/runtime "$(command -v chroot)" "$root" /var/lang/bin/python3.12 \
  -c 'import ssl, sqlite3, ctypes, awslambdaric.bootstrap, boto3'

# The real image's settings (its ENV, WORKDIR, ENTRYPOINT and CMD).
tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 TZ=:/etc/localtime PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin' \
  --change 'ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib' \
  --change 'ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'WORKDIR /var/task' --change 'ENTRYPOINT ["/lambda-entrypoint.sh"]' --change 'CMD ["app.handler"]' \
  - "$IMAGE" >/dev/null
rm -rf "$root"
docker image ls "$IMAGE"
