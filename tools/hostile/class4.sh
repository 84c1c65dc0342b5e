#!/usr/bin/env bash
# Class 4: deeply nested or oversized TOML. Nesting (headers, dotted keys, arrays, inline tables
# together) and length are bounded before toml++ parses, for specs, --set values and report configs.
source "$(dirname "$0")/lib.sh"
deep=$(python3 -c "print('.'.join(['a'] * 50000))")
printf '[%s]\nx = 1\n' "$deep" > header.toml
probe "spec with a 50,000-level table header" 2 "nested deeper than 32" -- "$SIGPROP" theory header.toml
probe "report config with a 50,000-level table header" 2 "nested deeper than 32" -- \
  "$SIGPROP" report header.toml --out rep
printf '%s = 1\n' "$deep" > dotted.toml
probe "spec with a 50,000-part dotted key" 2 "nested deeper than" -- "$SIGPROP" theory dotted.toml
python3 -c "print('[stack]\ndepth = ' + '[' * 100000 + ']' * 100000)" > arrays.toml
probe "spec with 100,000 nested arrays" 2 "nested deeper than" -- "$SIGPROP" theory arrays.toml
python3 -c "print('x = ' + '{a = ' * 50000 + '1' + '}' * 50000)" > inline.toml
probe "report config with 50,000 nested inline tables" 2 "nested deeper than" -- "$SIGPROP" report inline.toml --out rep
probe "--set with 100,000 nested arrays" 2 "nested deeper than" -- \
  "$SIGPROP" theory --set "stack.depth=$(python3 -c "print('[' * 100000)")"
python3 -c "print('# ' + 'x' * 2000000)" > long.toml
probe "a 2 MB spec is refused by length" 2 "longer than" -- "$SIGPROP" theory long.toml
probe "a spec read from /dev/zero ends with an error" 2 "longer than" -- "$SIGPROP" theory /dev/zero
python3 -c "print('[report]\ntitle = \"' + '[' * 50000 + '\"\n[stack]\ndepth = 2\ntokens = 4\n[sweep]\nstack.depth = [2, 3]\n[figures]\ndepth_returns = false')" > brackets_in_string.toml
probe "brackets inside a string are not nesting (a theory-only report runs)" 0 -- \
  "$SIGPROP" report brackets_in_string.toml --out rep2 --no-figures -q
finish
