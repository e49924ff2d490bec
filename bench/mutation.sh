#!/usr/bin/env bash
# Mutation testing of the evidence and alerting core (not CI: it takes a while).
# Runs mutmut over the modules listed in pyproject.toml [tool.mutmut] and prints the
# score per module: killed / (all mutants - those mutmut could not run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x .venv/bin/mutmut ] || .venv/bin/pip install -q mutmut
rm -rf mutants
LINKWATCH_HYPOTHESIS_PROFILE=mutation .venv/bin/mutmut run --max-children "${JOBS:-2}" >/dev/null 2>&1 || true
.venv/bin/mutmut results --all true > mutants/results.txt 2>/dev/null || true
$PY - <<'PY'
import collections, re
per = collections.defaultdict(collections.Counter)
for line in open("mutants/results.txt"):
    m = re.match(r"\s*([\w.]+)\.x[ǁ_].*?__mutmut_\d+: (.+)$", line.strip())
    if not m:
        continue
    module, status = m.group(1), m.group(2).strip()
    per[module][status] += 1
total = collections.Counter()
for module in sorted(per):
    c = per[module]
    total.update(c)
    counted = sum(c.values()) - c["not checked"]
    print(f"{module:28} {c['killed']:4}/{counted:<4} killed"
          f" ({100 * c['killed'] / max(counted, 1):5.1f} %)  survived {c['survived']},"
          f" timeout {c['timeout']}, no tests {c['no tests']}")
counted = sum(total.values()) - total["not checked"]
print(f"{'all':28} {total['killed']:4}/{counted:<4} killed ({100 * total['killed'] / max(counted, 1):5.1f} %)")
PY
echo "survivors: .venv/bin/mutmut results; one mutant's diff: .venv/bin/mutmut show NAME"
