"""A pytest plugin (load it with `-p tests.static.without_local_stack`, plugin autoload off) that makes the local
stack and the libraries only it and the other test directories use unimportable, as on a machine that has only the
product's dependencies (functions/shared/requirements.txt and the Lambda runtime's boto3) and pytest."""

import sys
from importlib.abc import MetaPathFinder

BLOCKED = ("local_stack", "moto", "yaml", "requests")


class _Refuse(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by {__name__})", name=name)
        return None


_already = sorted(name for name in sys.modules if name.partition(".")[0] in BLOCKED)
if _already:
    raise RuntimeError(f"{__name__} loaded too late: {_already} already imported (is plugin autoload off?)")
sys.meta_path.insert(0, _Refuse())
