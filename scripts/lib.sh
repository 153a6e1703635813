# Shared shell helpers for scripts/*.sh (sourced, not run).

# find_python X.Y: prints the path of a Python X.Y interpreter (PATH, then pyenv), or fails with a clear message.
find_python() {
  local want=$1 cand
  for cand in "python$want" "$HOME/.pyenv/versions/$want"*/bin/python"$want" /usr/bin/python"$want" /usr/local/bin/python"$want"; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys' >/dev/null 2>&1; then
      command -v "$cand"
      return 0
    fi
  done
  echo "error: Python $want is needed (the Lambda runtime is python$want) but none was found on PATH or in pyenv." >&2
  return 1
}
