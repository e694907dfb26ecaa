"""Checks the archive's tables against the archive itself, independently of
the server's code: the rows and totals are computed here from the NDJSON
with plain Python (the rules of crates/clearcount-server/src/tables.rs, as
the README states them), then compared with what pyarrow, DuckDB and the
csv module read from the Parquet and CSV files. Then runs the README's
DuckDB recipes, locally and (with --base-url) over HTTP, and compares what
they print with the numbers computed here.

usage: tables.py DATA_DIR K [--readme README.md] [--base-url URL] [--exact]

DATA_DIR holds archive/<week>.{ndjson,parquet,csv}. K is the threshold the
tables were built with. --exact also checks that the tables' sums equal the
NDJSON's raw sums (for K = 1, where nothing is left out).
Exits non-zero, with the reason, on any difference.
"""

import argparse
import csv
import glob
import json
import math
import os
import re
import sys

INSTALL = "python3 -m pip install 'duckdb==1.5.5' 'duckdb-extension-httpfs==1.5.5' pyarrow"
try:
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as e:  # a missing tool fails with the line that installs it
    sys.exit(f"tables.py: {e}; install with: {INSTALL}")

KINDS = {"reports": 0, "counter": 1, "stack": 2}
COLUMNS = ["week", "program", "version", "os", "arch", "kind", "counter", "bucket",
           "stack", "reports", "total"]
SCHEMA = pa.schema([
    pa.field("week", pa.date32(), nullable=False),
    pa.field("program", pa.string(), nullable=False),
    pa.field("version", pa.string(), nullable=False),
    pa.field("os", pa.string(), nullable=False),
    pa.field("arch", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("counter", pa.string()),
    pa.field("bucket", pa.string()),
    pa.field("stack", pa.string()),
    pa.field("reports", pa.uint64(), nullable=False),
    pa.field("total", pa.uint64(), nullable=False),
])


def fail(msg):
    sys.exit(f"tables.py: FAIL: {msg}")


def expect_eq(what, got, want):
    if got != want:
        fail(f"{what}:\n  got  {got!r}\n  want {want!r}")
    print(f"ok  {what}")


def read_ndjson(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def all_rows(week, reports):
    """Every row of the week, before the threshold: key -> [reports, total]."""
    cells = {}
    for r in reports:
        assert r["week"] == week, (r["week"], week)
        for p in r["programs"]:
            build = (week, p["program"], p["version"], p["os"], p["arch"])
            mine = {(*build, "reports", None, None, None): 1}
            for name, count in p.get("counters", {}).items():
                if count == 0:
                    continue
                counter, _, bucket = name.partition(":")
                key = (*build, "counter", counter, bucket if ":" in name else None, None)
                mine[key] = mine.get(key, 0) + count
            for name, count in p.get("stacks", {}).items():
                if count == 0:
                    continue
                counter, _, frames = name.partition("\n")
                for key in [(*build, "stack", counter, None, frames),
                            (*build, "counter", counter, None, None)]:
                    mine[key] = mine.get(key, 0) + count
            for key, total in mine.items():
                cell = cells.setdefault(key, [0, 0])
                cell[0] += 1
                cell[1] += total
    return cells


def sort_key(row):
    b = lambda s: (0, b"") if s is None else (1, s.encode())
    return (row[1].encode(), row[2].encode(), row[3].encode(), row[4].encode(),
            KINDS[row[5]], b(row[6]), b(row[7]), b(row[8]))


def expected_rows(week, reports, k):
    cells = all_rows(week, reports)
    kept = [(*key, c[0], c[1]) for key, c in cells.items() if c[0] >= k]
    kept.sort(key=sort_key)
    return kept, len(cells) - len(kept)


def check_parquet(path, week, rows, reports, k, hidden):
    table = pq.read_table(path)
    expect_eq(f"{path}: schema", table.schema.remove_metadata(), SCHEMA)
    got = [tuple(str(v) if i == 0 else v for i, v in enumerate(row.values()))
           for row in table.to_pylist()]
    expect_eq(f"{path}: {len(rows)} rows, in order (pyarrow)", got, rows)
    meta = pq.ParquetFile(path).metadata
    kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
    expect_eq(f"{path}: key-value metadata", {k: v for k, v in kv.items() if k.startswith("clearcount.")}, {
        "clearcount.week": week,
        "clearcount.source": f"archive/{week}.ndjson",
        "clearcount.reports": str(len(reports)),
        "clearcount.min_reports": str(k),
        "clearcount.hidden_rows": str(hidden),
    })
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        for c in range(rg.num_columns):
            col = rg.column(c)
            name = col.path_in_schema
            if not (col.is_stats_set and col.statistics.has_min_max):
                fail(f"{path}: row group {g}, column {name}: no min/max statistics")
            if col.compression != "SNAPPY":
                fail(f"{path}: column {name} is {col.compression}, not SNAPPY")
            if meta.schema.column(c).physical_type == "BYTE_ARRAY" and not (
                    set(col.encodings) & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}):
                fail(f"{path}: string column {name} is not dictionary-encoded: {col.encodings}")
    if meta.num_row_groups:
        print(f"ok  {path}: {meta.num_row_groups} row group(s), statistics on every column, "
              "string columns dictionary-encoded, Snappy")


def check_csv(path, rows):
    with open(path, newline="", encoding="utf-8") as f:
        got = list(csv.reader(f))
    want = [COLUMNS] + [["" if v is None else str(v) for v in row] for row in rows]
    expect_eq(f"{path}: header and {len(rows)} rows (csv module)", got, want)


def totals(con, source):
    q = f"SELECT kind, count(*), sum(reports), sum(total) FROM {source} GROUP BY kind ORDER BY kind"
    return [tuple(r) for r in con.execute(q).fetchall()]


def want_totals(rows):
    out = {}
    for r in rows:
        t = out.setdefault(r[5], [0, 0, 0])
        t[0] += 1
        t[1] += r[9]
        t[2] += r[10]
    return [(k, *v) for k, v in sorted(out.items())]


def raw_sums(reports):
    """What the NDJSON holds, summed directly: reports, counter counts,
    stack counts."""
    n = sum(len(r["programs"]) for r in reports)
    counters = sum(c for r in reports for p in r["programs"] for c in p.get("counters", {}).values())
    stacks = sum(c for r in reports for p in r["programs"] for c in p.get("stacks", {}).values())
    return n, counters, stacks


# The README's recipes, computed here from the expected rows.
def s(rows, **where):
    return [r for r in rows if all(r[COLUMNS.index(k)] == v for k, v in where.items())]


def per_week(rows, num, den):
    out = []
    for week in sorted({r[0] for r in rows}):
        n = sum(r[9] for r in num(week)) or None
        d = sum(r[9] for r in den(week)) or None
        out.append((week, n, d, None if n is None or d is None else n / d))
    return out


def recipe_expected(name, rows):
    m = s(rows, program="mytool")
    if name == "weekly-totals":
        groups = {}
        for r in s(m, kind="counter", counter="mytool/command", bucket="build"):
            g = groups.setdefault((r[0], r[2]), [0, 0])
            g[0] += r[10]
            g[1] += r[9]
        return [(w, v, t, n) for (w, v), (t, n) in sorted(groups.items())]
    if name == "crash-share":
        return per_week(m, lambda w: s(m, week=w, kind="counter", counter="crash/panic"),
                        lambda w: s(m, week=w, kind="reports"))
    if name == "top-stacks":
        groups = {}
        for r in s(m, kind="stack"):
            g = groups.setdefault((r[6], r[8]), [0, 0])
            g[0] += r[9]
            g[1] += r[10]
        out = [(c, st, n, t) for (c, st), (n, t) in groups.items()]
        out.sort(key=lambda x: (-x[2], x[1].encode()))
        return out[:10]
    if name == "bucket-trend":
        return per_week(m, lambda w: s(m, week=w, kind="counter", counter="mytool/build-time", bucket=">=1s"),
                        lambda w: s(m, week=w, kind="reports"))
    fail(f"no expectation for recipe {name!r}")


def readme_recipes(path):
    text = open(path, encoding="utf-8").read()
    found = re.findall(r"<!-- recipe:([a-z-]+) -->\s*```sql\n(.*?)```", text, re.S)
    if not found:
        fail(f"{path} has no <!-- recipe:NAME --> blocks")
    return found


def same(got, want):
    if len(got) != len(want):
        return False
    for g, w in zip(got, want):
        if len(g) != len(w):
            return False
        for a, b in zip(g, w):
            if isinstance(a, float) or isinstance(b, float):
                if a is None or b is None or not math.isclose(a, b, rel_tol=1e-12):
                    return False
            elif a != b:
                return False
    return True


def run_recipe(con, name, sql, want):
    got = [tuple(str(v) if hasattr(v, "isoformat") else v for v in row)
           for row in con.execute(sql).fetchall()]
    print(f"recipe {name}:")
    for row in got:
        print("    " + " | ".join("" if v is None else f"{v:.4f}" if isinstance(v, float)
                                  else str(v).replace("\n", "\\n") for v in row))
    if not same(got, want):
        fail(f"recipe {name} printed\n  {got!r}\nbut the NDJSON gives\n  {want!r}")
    print(f"ok  recipe {name}: {len(got)} rows, as computed from the NDJSON")


def httpfs(con):
    try:
        import duckdb_extension_httpfs
    except ImportError as e:
        sys.exit(f"tables.py: {e}; install with: {INSTALL}")
    ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__),
                                 "extensions", "*", "httpfs.duckdb_extension"))
    if not ext:
        fail("duckdb_extension_httpfs holds no httpfs.duckdb_extension")
    # A signed extension: DuckDB checks its signature when loading it.
    con.execute(f"LOAD '{ext[0]}'")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("k", type=int)
    ap.add_argument("--readme")
    ap.add_argument("--base-url")
    ap.add_argument("--exact", action="store_true")
    a = ap.parse_args()
    archive = os.path.join(a.data, "archive")
    weeks = sorted(os.path.basename(p)[:-len(".ndjson")]
                   for p in glob.glob(os.path.join(archive, "*.ndjson")))
    if not weeks:
        fail(f"no archive files in {archive}")
    con = duckdb.connect()
    everything = []
    for week in weeks:
        reports = read_ndjson(os.path.join(archive, f"{week}.ndjson"))
        rows, hidden = expected_rows(week, reports, a.k)
        everything += rows
        pq_path = os.path.join(archive, f"{week}.parquet")
        csv_path = os.path.join(archive, f"{week}.csv")
        check_parquet(pq_path, week, rows, reports, a.k, hidden)
        check_csv(csv_path, rows)
        want = want_totals(rows)
        expect_eq(f"{week}: DuckDB read_parquet totals by kind", totals(con, f"read_parquet('{pq_path}')"), want)
        expect_eq(f"{week}: DuckDB read_csv totals by kind", totals(con, f"read_csv('{csv_path}')"), want)
        if a.exact:
            n, counters, stacks = raw_sums(reports)
            by_kind = {r[0]: r for r in want}
            plain = sum(r[10] for r in rows if r[5] == "counter") - by_kind.get("stack", (0, 0, 0, 0))[3]
            expect_eq(f"{week}: reports, counter counts and stack counts, tables against the NDJSON's raw sums",
                      (by_kind["reports"][2], plain, by_kind.get("stack", (0, 0, 0, 0))[3]),
                      (n, counters, stacks))
        print(f"    {week}: {len(reports)} reports, {len(rows)} rows, {hidden} under {a.k} reports left out")
    if a.readme:
        recipes = readme_recipes(a.readme)
        os.chdir(a.data)  # the recipes read archive/*.parquet from the data directory
        local = [(n, sql) for n, sql in recipes if n != "remote"]
        for name, sql in local:
            run_recipe(con, name, sql, recipe_expected(name, everything))
        if a.base_url:
            httpfs(con)
            urls = ", ".join(f"'{a.base_url}/data/{w}.parquet'" for w in weeks)
            remote = dict(recipes).get("remote")
            if remote is None:
                fail("the README has no <!-- recipe:remote --> block")
            remote = re.sub(r"read_parquet\(\[.*?\]\)", f"read_parquet([{urls}])", remote, flags=re.S)
            run_recipe(con, "remote (the README's, over HTTP)", remote, recipe_expected("weekly-totals", everything))
            for name, sql in local:
                sql = sql.replace("read_parquet('archive/*.parquet')", f"read_parquet([{urls}])")
                run_recipe(con, f"{name} over HTTP", sql, recipe_expected(name, everything))
    print("tables.py: all checks passed")


main()
