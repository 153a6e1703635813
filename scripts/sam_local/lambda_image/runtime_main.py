"""The Python runtime of the local stand-in image: Lambda's import path, then awslambdaric's invocation loop.

Lambda's Python runtimes search the function's code first, then the layers' python directories, then the runtime's
own packages ("Working with .zip file archives for Python Lambda functions", AWS Lambda Developer Guide,
https://docs.aws.amazon.com/lambda/latest/dg/python-package.html).
"""

import os
import sys

LAYER_DIRECTORIES = ("/opt/python/lib/python3.12/site-packages", "/opt/python")


def main() -> None:
    task_root = os.environ.get("LAMBDA_TASK_ROOT", "/var/task")
    sys.path[:0] = [path for path in (task_root, *LAYER_DIRECTORIES) if path not in sys.path]
    handler = os.environ.get("_HANDLER") or os.environ["AWS_LAMBDA_FUNCTION_HANDLER"]
    from awslambdaric.__main__ import main as run_runtime

    run_runtime([sys.argv[0], handler])


if __name__ == "__main__":
    main()
