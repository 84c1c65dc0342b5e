#!/usr/bin/env bash
# Class 10: relative --gnuplot, escaped/truncated error text, CLI parse errors exit 2, unknown
# commands named, errno reported right, validate --samples beyond the Monte Carlo's limit.
. "$(dirname "$0")/lib.sh"
S=$SIGPROP
if command -v gnuplot > /dev/null; then
  mkdir -p bin
  printf '#!/bin/sh\necho run >> "$(dirname "$0")/ran"\nexec gnuplot "$@"\n' > bin/gp; chmod +x bin/gp
  printf '[stack]\ntokens = 4\nwidth = 16\nheads = 2\n[sweep]\nstack.depth = [2, 4]\n[engines.theory]\nattn_samples = 64\nerror_batches = 0\n[engines.simulate]\nsamples = 2\nseed = 1\n' > tiny.toml
  probe "report --gnuplot ./bin/gp (relative)" 0 -- "$S" report tiny.toml -q --out rep --gnuplot ./bin/gp
  check "the relative gnuplot was run" test -s bin/ran
  check "figures were drawn" bash -c "ls rep/figures/*.svg > /dev/null"
  check "no 'not drawn' warning" bash -c "! grep -q 'not drawn' '$ERR'"
  SIGPROP_GNUPLOT=./bin/gp probe "SIGPROP_GNUPLOT=./bin/gp (relative)" 0 -- "$S" report tiny.toml -q --out rep2
  check "figures were drawn with the environment's relative path" bash -c "ls rep2/figures/*.svg > /dev/null"
else
  echo "(gnuplot not installed: relative --gnuplot probes skipped)"
fi

esc=$(printf 'stack.norm=\033[31mred\342\200\256evil')
probe "ANSI escape and RTL override in a --set value" 2 'x1b\[31mred\\u\{202e\}evil' -- "$S" theory --set "$esc"
check "no raw ESC byte on stderr" bash -c "! grep -q \$'\\x1b' '$ERR'"
check "no raw RTL override on stderr" bash -c "! grep -q \$'\\xe2\\x80\\xae' '$ERR'"
printf '[stack]\nnorm = "' > huge.toml; head -c 50000000 /dev/zero | tr '\0' n >> huge.toml; printf '"\n' >> huge.toml
probe "a 50 MB spec value (beyond the 1 MiB TOML limit: refused unread, nothing echoed)" 2 "longer than" -- "$S" theory huge.toml
check "stderr stays short (< 5000 bytes)" test "$(wc -c < "$ERR")" -lt 5000
printf '[stack]\nnorm = "' > long.toml; head -c 500000 /dev/zero | tr '\0' n >> long.toml; printf '"\n' >> long.toml
probe "a 500 kB spec value is echoed cut short" 2 "bytes in all" -- "$S" theory long.toml
check "stderr stays short (< 5000 bytes)" test "$(wc -c < "$ERR")" -lt 5000
printf '[stack]\nnorm = "\033]0;pwned\007"\n' > title.toml
probe "an OSC title sequence in a spec value (TOML refuses raw control characters)" 2 "control characters" -- "$S" theory title.toml
check "no raw BEL/ESC on stderr" bash -c "! grep -q \$'[\\x1b\\x07]' '$ERR'"
printf '[stack]\nnorm = "\\u001b]0;pwned\\u0007"\n' > title2.toml
probe "an escaped OSC title sequence in a spec value is echoed escaped" 2 'x1b\]0;pwned\\x07' -- "$S" theory title2.toml
check "no raw BEL/ESC on stderr" bash -c "! grep -q \$'[\\x1b\\x07]' '$ERR'"
rm -f huge.toml

probe "simulate --samples abc exits 2" 2 "sigprop: error" -- "$S" simulate --samples abc --seed 1
probe "theory --bogus exits 2" 2 "sigprop: error" -- "$S" theory --bogus
probe "missing required option exits 2" 2 "--seed" -- "$S" simulate --samples 2
probe "option without its value exits 2" 2 "sigprop: error" -- "$S" theory --rows
probe "value outside a set exits 2" 2 "sigprop: error" -- "$S" ode --kind nonsense
probe "extra positional arguments exit 2" 2 "sigprop: error" -- "$S" theory a b c
probe "no command exits 2" 2 "sigprop: error" -- "$S"
probe "sigprop bogus names the unknown command" 2 "unknown command 'bogus'" -- "$S" bogus
probe "an unknown command with escapes is escaped" 2 "unknown command 'bo.x1b" -- "$S" "$(printf 'bo\033[2Jgus')"
probe "--help exits 0" 0 -- "$S" --help
probe "--version exits 0" 0 -- "$S" --version

mkdir -p ro; chmod 555 ro
if [ "$(id -u)" != 0 ]; then
  probe "write into an unwritable folder names the errno (never 'Success')" 1 "Permission denied" -- "$S" theory -q --json ro/p.json
  check "no 'Success'" bash -c "! grep -q Success '$ERR'"
fi
chmod 755 ro

"$S" train --corpus /usr/share/common-licenses/GPL-3 --out tr --steps 2 --set stack.depth=1 --set stack.width=16 \
  --set stack.heads=2 --set stack.tokens=16 --batch 2 --threads 1 -q > /dev/null 2>&1
probe "validate --samples 70000 is an error, not a dropped prediction" 2 "--samples.*65536" -- "$S" validate --checkpoint tr/final.safetensors --corpus /usr/share/common-licenses/GPL-3 --tokens 64 --ensemble 0 --samples 70000
probe "validate --samples -1 is an error" 2 "--samples" -- "$S" validate --checkpoint tr/final.safetensors --corpus /usr/share/common-licenses/GPL-3 --tokens 64 --ensemble 0 --samples -1
finish
