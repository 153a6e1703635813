#!/bin/sh
# Entry point of the local stand-in for the Lambda python3.12 base image (scripts/sam_local/build_lambda_image.sh):
# as the real image's, it takes the handler as its one argument and runs the runtime under the Runtime Interface
# Emulator unless a Runtime API is already given.
if [ $# -ne 1 ]; then
  echo "usage: lambda-entrypoint.sh HANDLER" >&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ]; then
  exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap
fi
exec /var/runtime/bootstrap
