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

# start_part NAME COMMAND [ARG...]: runs COMMAND (a function or a program) in the background, its output kept for
# finish_parts. The bootstrap's parts are independent and pip uses one core at a time, so on two cores they take
# about half as long side by side.
_part_logs=""
_part_names=()
_part_pids=()
start_part() {
  local name=$1
  shift
  [ -n "$_part_logs" ] || _part_logs=$(mktemp -d)
  ( "$@" ) >"$_part_logs/$name" 2>&1 &
  _part_names+=("$name")
  _part_pids+=("$!")
}

# finish_parts: waits for every started part, prints the output of each, and fails if any part failed.
finish_parts() {
  local i failed=()
  for i in "${!_part_pids[@]}"; do
    if ! wait "${_part_pids[$i]}"; then
      failed+=("${_part_names[$i]}")
    fi
    cat "$_part_logs/${_part_names[$i]}" >&2
  done
  rm -rf "$_part_logs"
  _part_logs="" _part_names=() _part_pids=()
  if [ ${#failed[@]} -gt 0 ]; then
    echo "error: bootstrap failed in: ${failed[*]} (its output is above)" >&2
    return 1
  fi
}
