#!/usr/bin/env bash
# Print the path of a working interpreter for each Python 3.12+ found on this machine,
# besides the default python3: on the PATH (pythonX.Y), else in pyenv's versions.
set -u
default=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
for v in 3.12 3.13 3.14; do
    [ "$v" = "$default" ] && continue
    exe=$("python$v" -c 'import sys; print(sys.executable)' 2>/dev/null) || exe=""
    if [ -z "$exe" ] && command -v pyenv >/dev/null 2>&1; then
        for candidate in "$(pyenv root)"/versions/"$v".*/bin/python"$v"; do
            if [ -x "$candidate" ] && "$candidate" -c '' 2>/dev/null; then
                exe=$candidate
            fi
        done
    fi
    [ -n "$exe" ] && echo "$exe"
done
exit 0
