"""Parses an OpenMetrics text exposition (standard input) with the
Prometheus project's own parser (prometheus_client.openmetrics.parser,
which refuses anything the format does not allow, such as a missing
`# EOF`), and prints what it found as JSON: the families (name, type, unit,
help) and every sample (name, labels, value).

usage: python3 openmetrics.py < scrape.txt
"""

import json
import sys

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError as e:  # a missing tool fails with the line that installs it
    sys.exit(f"openmetrics.py: {e}; install with: python3 -m pip install prometheus_client")

families = []
for f in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": f.name,
        "type": f.type,
        "unit": f.unit,
        "help": f.documentation,
        "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples],
    })
json.dump(families, sys.stdout)
